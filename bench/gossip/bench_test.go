// Package gossip_test benchmarks the gossip backend (backend/gossip): real
// memberlist nodes in this process on 127.0.0.1 (encrypted, the loopback
// preset, each voter with a StateDir), 3 voters and non-voting followers,
// this module's elector on each. It compares with client-go's elector on a
// Kubernetes Lease against a real kube-apiserver, in the same run with the
// same durations (through internal/benchtest, the harness bench/k8s uses):
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 60m ./bench/gossip
//
// Two sub-benchmarks: "15s" (LeaseDuration/RenewDeadline/RetryPeriod
// 15s/10s/2s, client-go's defaults; few crash samples, since each takes
// more than a lease) and "short" (2s/1.5s/1s, for more samples). Each
// prints a Markdown table (docs/backends/gossip.md holds the latest):
//
//   - graceful hand-over: the leader is told to stop (ReleaseOnCancel) →
//     the next leader's OnStartedLeading;
//   - release right after a follower's crash: a random follower stops
//     dead (memberlist still lists it, and it may be first in turn), then
//     the leader is told to stop → the next leader's OnStartedLeading;
//   - crash fail-over beyond LeaseDuration: every link of the leader is cut
//     and its process ends, releasing nothing; from the RenewTime of its
//     last renewal → the next leader's OnStartedLeading, minus
//     LeaseDuration;
//   - messages for 1 leader and 9 followers in steady state, counted at the
//     fault transport (gossiptest.Network.Counts: UDP packets and TCP
//     streams per directed link) and by each lock's own counter of protocol
//     messages (leader_election_gossip_messages_sent_total, by kind). A
//     protocol message is one TCP stream, so memberlist's own traffic
//     (probes, gossip: UDP; push/pull: streams) is the transport's count
//     minus the lock's. Followers' messages are split into replies to the
//     leader's rounds (promise, accepted, nack, report) and messages of
//     their own (prepare, accept, query, push, refused), which must be zero.
//
// Flags set the sample counts and the window; -clientgo=false skips the
// comparison (and kube-apiserver).
package gossip_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/klog/v2"
	"k8s.io/klog/v2/textlogger"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/gossip"
	"github.com/b3df926d/leaderelection/backend/gossip/gossiptest"
	"github.com/b3df926d/leaderelection/internal/benchtest"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
)

var (
	followers      = flag.Int("followers", 9, "followers besides the leader (the 3 voters are candidates too; the rest do not vote)")
	window         = flag.Duration("window", time.Minute, "how long messages are counted in steady state")
	handovers      = flag.Int("handovers", 20, "graceful hand-overs measured at 15s/10s/2s")
	crashes        = flag.Int("crashes", 5, "crash fail-overs measured at 15s/10s/2s (each takes more than 15 s)")
	shortHandovers = flag.Int("short-handovers", 50, "graceful hand-overs measured at 2s/1.5s/1s")
	shortCrashes   = flag.Int("short-crashes", 30, "crash fail-overs measured at 2s/1.5s/1s")
	clientGo       = flag.Bool("clientgo", true, "also measure client-go's elector on a Lease (needs kube-apiserver and etcd)")
	stateDirs      = flag.Bool("state-dir", true, "give each voter a StateDir (as the StatefulSet does)")
	logFile        = flag.String("log", "", "write every candidate's elector and lock logs (verbosity 4) and each crash to this file, to analyse a slow sample")
)

// candidateLog is where candidates log: nowhere, or the -log file.
var candidateLog = logr.Discard()

func TestMain(m *testing.M) {
	klog.SetLogger(logr.Discard()) // client-go's elector logs every attempt; the table is the output
	flag.Parse()
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	defer testserver.StopSharedKube()
	if *logFile != "" {
		f, err := os.Create(*logFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		defer f.Close() //nolint:errcheck // best effort, after the run
		candidateLog = textlogger.NewLogger(textlogger.NewConfig(textlogger.Verbosity(4), textlogger.Output(f)))
	}
	return m.Run()
}

var voters = []string{"v1", "v2", "v3"}

// cluster is one election's candidates: gossip locks on one fault network.
type cluster struct {
	tb   testing.TB
	name string
	net  *gossiptest.Network
	tm   benchtest.Timing
	dirs map[string]string

	mu       sync.Mutex
	addrs    map[string]string // voter → address, for Join
	locks    map[string]*gossip.Lock
	regs     map[string]*prometheus.Registry
	renewals map[string]*atomic.Int64
	// written is when each record any candidate wrote was written (the
	// start of the Create or Update, by its encoding: the record's exact
	// RenewTime, which the encoding keeps to the second only); lastRead is
	// the record each candidate's last Get returned; replaced is the
	// record each candidate's last take-over replaced.
	written            map[string]time.Time
	lastRead, replaced map[string]string
}

func newCluster(tb testing.TB, name string, tm benchtest.Timing) *cluster {
	c := &cluster{tb: tb, name: name, tm: tm, net: gossiptest.NewNetwork(uint64(time.Now().UnixNano())),
		dirs: map[string]string{}, addrs: map[string]string{}, locks: map[string]*gossip.Lock{},
		regs: map[string]*prometheus.Registry{}, renewals: map[string]*atomic.Int64{},
		written: map[string]time.Time{}, lastRead: map[string]string{}, replaced: map[string]string{}}
	if *stateDirs {
		for _, v := range voters {
			c.dirs[v] = tb.TempDir()
		}
	}
	tb.Cleanup(c.net.Close)
	return c
}

// names are every candidate's name: the voters, then f1, f2, ...
func names() []string {
	out := slices.Clone(voters)
	for i := 1; len(out) < *followers+1; i++ {
		out = append(out, fmt.Sprintf("f%d", i))
	}
	return out
}

// renewCounter counts a leader's successful renewals (Config.Metrics).
type renewCounter struct{ n *atomic.Int64 }

func (r renewCounter) ObserveRenew(_ string, _ time.Duration, err error) {
	if err == nil {
		r.n.Add(1)
	}
}

// tracedLock is the gossip lock as the elector sees it, noting what each
// candidate writes and reads, so that a crash's fail-over is measured from
// the write that was in the register when the next leader took over: the
// leader's last renewal that took effect, even when the leader was cut off
// before it learned so (a crash mid-round).
type tracedLock struct {
	*gossip.Lock
	c  *cluster
	id string
}

func (t tracedLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	rec, raw, err := t.Lock.Get(ctx)
	if err == nil {
		t.c.mu.Lock()
		t.c.lastRead[t.id] = string(raw)
		t.c.mu.Unlock()
	}
	return rec, raw, err
}

func (t tracedLock) Create(ctx context.Context, rec lock.Record) error {
	t.c.wrote(rec)
	return t.Lock.Create(ctx, rec)
}

func (t tracedLock) Update(ctx context.Context, rec lock.Record) error {
	t.c.wrote(rec)
	t.c.mu.Lock()
	prev := t.c.lastRead[t.id]
	t.c.mu.Unlock()
	err := t.Lock.Update(ctx, rec)
	if err == nil && !strings.Contains(prev, fmt.Sprintf(`"holderIdentity":%q`, t.id)) {
		t.c.mu.Lock()
		t.c.replaced[t.id] = prev // a take-over: compared with prev
		t.c.mu.Unlock()
	}
	return err
}

// wrote notes when rec, encoded as the gossip lock encodes it, was written.
func (c *cluster) wrote(rec lock.Record) {
	raw, err := json.Marshal(rec)
	if err != nil {
		c.tb.Fatal(err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.written[string(raw)]; !ok {
		c.written[string(raw)] = time.Now()
	}
}

// start is the fleet's benchtest.Start: a new process for candidate id.
func (c *cluster) start(tb testing.TB, id string, release bool, led func(string)) func() {
	tr, err := c.net.Transport(id)
	if err != nil {
		tb.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	lg := candidateLog.WithName(id)
	voter := slices.Contains(voters, id)
	c.mu.Lock()
	var join []string
	for v, a := range c.addrs {
		if v != id {
			join = append(join, a)
		}
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	lk, err := gossip.New(ctx, gossip.Options{
		Name: c.name, Identity: id, Voters: voters, NonVoter: !voter,
		SecretKey: []byte("0123456789abcdef0123456789abcdef"),
		Preset:    gossip.PresetLoopback, Transport: tr, Join: join,
		StateDir: c.dirs[id], Logger: &lg, Registerer: reg,
	})
	if err != nil {
		_ = tr.Shutdown()
		tb.Fatalf("gossip.New(%s): %v", id, err)
	}
	renewals := &atomic.Int64{}
	c.mu.Lock()
	if voter {
		c.addrs[id] = lk.Addr()
	}
	c.locks[id], c.regs[id], c.renewals[id] = lk, reg, renewals
	c.mu.Unlock()
	e, err := leaderelection.NewElector(leaderelection.Config{
		Lock: tracedLock{Lock: lk, c: c, id: id}, LeaseDuration: c.tm.LeaseDuration, RenewDeadline: c.tm.RenewDeadline, RetryPeriod: c.tm.RetryPeriod,
		ReleaseOnCancel: release, Logger: &lg, Metrics: renewCounter{n: renewals},
		Callbacks: leaderelection.Callbacks{OnStartedLeading: func(ctx context.Context) {
			led(id)
			<-ctx.Done()
		}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	stop := benchtest.RunUntilStopped(func(ctx context.Context) {
		e.Run(ctx) //nolint:errcheck // a lost lease shows in the measurements
	})
	all := names()
	return func() {
		if !release {
			// A crash: the process stops dead. Nothing it sends from now
			// on leaves (no release, no memberlist leave).
			c.net.Isolate(id, all)
		}
		stop()
		_ = lk.Close()
		c.mu.Lock()
		delete(c.locks, id)
		c.mu.Unlock()
		if !release {
			// The next process under this name starts on healthy links.
			for _, o := range all {
				c.net.Set(id, o, gossiptest.Link{})
				c.net.Set(o, id, gossiptest.Link{})
			}
		}
	}
}

// fleet starts every candidate of a fresh cluster, voters first.
func (c *cluster) fleet(release bool) *benchtest.Fleet {
	f := benchtest.NewFleet(c.tb, "gossip", c.start, release, 4*c.tm.LeaseDuration+30*time.Second)
	f.Restart = func(id string) string { return id } // a process restarted under its name
	for _, id := range names() {
		f.Add(id)
	}
	return f
}

// lastRenew is when the record the next leader took over was written:
// the crashed leader's last renewal that took effect.
func (c *cluster) lastRenew(crashed, next string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	raw := c.replaced[next]
	at, ok := c.written[raw]
	if !ok || !strings.Contains(raw, fmt.Sprintf(`"holderIdentity":%q`, crashed)) {
		c.tb.Fatalf("%s took over from a record not written by %s: %s", next, crashed, raw)
	}
	candidateLog.Info("BENCH: took over from a crashed leader", "crashed", crashed, "next", next, "lastRenew", at)
	return at
}

// waitMembers waits until every candidate sees all of them.
func (c *cluster) waitMembers(n int) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c.mu.Lock()
		ok := len(c.locks) == n
		for _, l := range c.locks {
			ok = ok && l.NumMembers() >= n
		}
		c.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			c.tb.Fatalf("members did not all see each other within 30s")
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}

// traffic is what one candidate sent: protocol messages by kind (the
// lock's counter), and UDP packets and TCP streams (the transport's).
type traffic struct {
	lock             map[string]float64
	packets, streams int
}

func (c *cluster) traffic(all []string) map[string]traffic {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]traffic{}
	for _, id := range all {
		tr := traffic{lock: map[string]float64{}}
		for _, o := range all {
			n := c.net.Counts(id, o)
			tr.packets += n.Packets
			tr.streams += n.Streams
		}
		mfs, err := c.regs[id].Gather()
		if err != nil {
			c.tb.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "leader_election_gossip_messages_sent_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				for _, lp := range m.GetLabel() {
					if lp.GetName() == "kind" {
						tr.lock[lp.GetValue()] += m.GetCounter().GetValue()
					}
				}
			}
		}
		out[id] = tr
	}
	return out
}

func (t traffic) lockTotal() float64 {
	s := 0.0
	for _, v := range t.lock {
		s += v
	}
	return s
}

// replies are the kinds a voter sends only in answer to another's round.
var replies = []string{"promise", "accepted", "nack", "report"}

// steady are the figures of the steady-state window.
type steady struct {
	leader       string
	renewals     int64
	leaderLock   map[string]float64 // protocol messages the leader sent, by kind
	allLock      float64            // protocol messages everyone sent
	followerOwn  map[string]float64 // followers' messages not in answer to the leader
	followerRepl map[string]float64 // followers' replies to the leader's rounds
	mlPackets    float64            // memberlist's UDP packets, everyone
	mlStreams    float64            // memberlist's TCP streams (push/pull, fallback probes), everyone
	mlFollower   float64            // memberlist's packets and streams sent by followers
	moved        bool               // leadership moved during the window
}

func measureSteady(c *cluster, f *benchtest.Fleet, leader benchtest.Leadership) (steady, benchtest.Leadership) {
	all := names()
	c.waitMembers(len(all))
	time.Sleep(3 * c.tm.RetryPeriod) // let every follower settle into its loop; not synchronisation
	c.mu.Lock()
	renewals := c.renewals[leader.ID]
	c.mu.Unlock()
	r0 := renewals.Load()
	before := c.traffic(all)
	time.Sleep(*window) // the measurement window
	after := c.traffic(all)
	cur := f.Current(leader)
	s := steady{moved: cur != leader, leader: leader.ID, renewals: renewals.Load() - r0, leaderLock: map[string]float64{},
		followerOwn: map[string]float64{}, followerRepl: map[string]float64{}}
	for _, id := range all {
		a, b := after[id], before[id]
		lock := map[string]float64{}
		for k, v := range a.lock {
			if d := v - b.lock[k]; d > 0 {
				lock[k] = d
			}
		}
		d := traffic{lock: lock, packets: a.packets - b.packets, streams: a.streams - b.streams}
		s.allLock += d.lockTotal()
		s.mlPackets += float64(d.packets)
		s.mlStreams += float64(d.streams) - d.lockTotal()
		if id == leader.ID {
			s.leaderLock = lock
			continue
		}
		s.mlFollower += float64(d.packets) + float64(d.streams) - d.lockTotal()
		for k, v := range lock {
			if slices.Contains(replies, k) {
				s.followerRepl[k] += v
			} else {
				s.followerOwn[k] += v
			}
		}
	}
	return s, cur
}

func sum(m map[string]float64) float64 {
	s := 0.0
	for _, v := range m {
		s += v
	}
	return s
}

func perMin(m map[string]float64, w time.Duration) string {
	counts := map[string]int{}
	for k, v := range m {
		counts[k] = int(v)
	}
	if len(counts) == 0 {
		return "none"
	}
	return benchtest.PerMinute(counts, w)
}

type gossipResult struct {
	handover, failover []time.Duration
	// crashRelease: a follower crashes (it stops dead: memberlist still
	// lists it until its suspicion ends), then at once the leader stops
	// gracefully; from that stop to the next leader's OnStartedLeading.
	crashRelease []time.Duration
	steady       steady
}

// crashThenRelease crashes a random follower (a voter only if the leader
// is not one: a quorum of voters must remain), then at once stops the
// leader gracefully, n times, and returns each time from the stop to the
// next leader's OnStartedLeading. The crashed candidate is still alive in
// the others' memberlist view, and sometimes first in turn to take over,
// so the release's hand-over and first push go to a dead process: the
// next in turn must still take over within a turn step, not a lease.
// Both are restarted under their names after each sample; settle lets
// them start following.
func (c *cluster) crashThenRelease(f *benchtest.Fleet, leader benchtest.Leadership, n int, settle time.Duration) ([]time.Duration, benchtest.Leadership) {
	var out []time.Duration
	all := names()
	for range n {
		leader = f.Current(leader)
		// With the leader stopped too, two of the three voters must stay:
		// under a voting leader only a non-voter crashes.
		var followers []string
		for _, id := range f.IDs() {
			if id != leader.ID && (!slices.Contains(voters, leader.ID) || !slices.Contains(voters, id)) {
				followers = append(followers, id)
			}
		}
		crashed := followers[rand.N(len(followers))]
		c.net.Isolate(crashed, all) // nothing it sends leaves: no memberlist leave
		f.Stop(crashed)
		start := time.Now()
		f.Stop(leader.ID)
		next := f.NextLeader()
		out = append(out, next.At.Sub(start))
		for _, o := range all { // the restarted process starts on healthy links
			c.net.Set(crashed, o, gossiptest.Link{})
			c.net.Set(o, crashed, gossiptest.Link{})
		}
		f.Add(f.Restart(crashed))
		f.Add(f.Restart(leader.ID))
		leader = next
		time.Sleep(settle) // let the restarted followers settle; not synchronisation
	}
	return out, leader
}

func measureGossip(b *testing.B, tm benchtest.Timing, nHandovers, nCrashes int) *gossipResult {
	r := &gossipResult{}
	c := newCluster(b, fmt.Sprintf("bench-%d", time.Now().UnixNano()), tm)
	f := c.fleet(true)
	leader := f.NextLeader()
	r.steady, leader = measureSteady(c, f, leader)
	r.handover, leader = f.Handovers(leader, nHandovers, tm.RetryPeriod)
	r.crashRelease, _ = c.crashThenRelease(f, leader, nHandovers, 2*tm.RetryPeriod)
	f.StopAll()

	c = newCluster(b, fmt.Sprintf("bench-crash-%d", time.Now().UnixNano()), tm)
	f = c.fleet(false)
	leader = f.NextLeader()
	r.failover, _ = f.Crashes(leader, nCrashes, tm.LeaseDuration, 2*tm.RetryPeriod, func(crashed string) func(string) time.Time {
		return func(next string) time.Time { return c.lastRenew(crashed, next) }
	})
	f.StopAll()
	return r
}

func BenchmarkGossipElection(b *testing.B) {
	if b.N > 1 {
		b.Skip("runs once: use -benchtime 1x")
	}
	b.Run("15s", func(b *testing.B) {
		run(b, benchtest.Timing{LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second}, *handovers, *crashes)
	})
	b.Run("short", func(b *testing.B) {
		run(b, benchtest.Timing{LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: time.Second}, *shortHandovers, *shortCrashes)
	})
}

func run(b *testing.B, tm benchtest.Timing, nHandovers, nCrashes int) {
	if b.N > 1 {
		b.Skip("runs once: use -benchtime 1x")
	}
	g := measureGossip(b, tm, nHandovers, nCrashes)
	var cg *benchtest.LeaseResult
	if *clientGo {
		kube := testserver.SharedKube(b)
		cg = benchtest.MeasureLease(b, kube, benchtest.ClientGo, benchtest.LeasePlan{
			Timing: tm, Candidates: *followers + 1, Window: *window, Handovers: nHandovers, Crashes: nCrashes,
		})
	}
	pct, ms := benchtest.Pct, benchtest.Ms
	s := g.steady
	w := window.Minutes()
	perRenewal := 0.0
	if s.renewals > 0 {
		perRenewal = s.allLock / float64(s.renewals)
	}
	b.ReportMetric(benchtest.Millis(pct(g.handover, 0.5)), "handover-p50-ms")
	b.ReportMetric(benchtest.Millis(pct(g.handover, 0.99)), "handover-p99-ms")
	b.ReportMetric(benchtest.Millis(pct(g.crashRelease, 0.5)), "crash-then-release-p50-ms")
	b.ReportMetric(benchtest.Millis(pct(g.crashRelease, 0.99)), "crash-then-release-p99-ms")
	b.ReportMetric(benchtest.Millis(pct(g.failover, 0.5)), "failover-beyond-lease-p50-ms")
	b.ReportMetric(benchtest.Millis(pct(g.failover, 0.99)), "failover-beyond-lease-p99-ms")
	b.ReportMetric(perRenewal, "msgs/renewal")
	b.ReportMetric(s.allLock/w, "lock-msgs/min")
	b.ReportMetric(sum(s.followerOwn)/w, "follower-own-msgs/min")
	b.ReportMetric((s.mlPackets+s.mlStreams)/w, "memberlist-msgs/min")
	if cg != nil {
		b.ReportMetric(benchtest.Millis(pct(cg.Handover, 0.99)), "clientgo-handover-p99-ms")
		b.ReportMetric(benchtest.Millis(pct(cg.Failover, 0.99)), "clientgo-failover-beyond-lease-p99-ms")
		b.ReportMetric(cg.PerMinute, "clientgo-req/min")
	}

	var t strings.Builder
	fmt.Fprintf(&t, "LeaseDuration %v, RenewDeadline %v, RetryPeriod %v; 3 voters (StateDir: %v), %d candidates (1 leader + %d followers); %d hand-overs, %d crashes; window %v.\n\n",
		tm.LeaseDuration, tm.RenewDeadline, tm.RetryPeriod, *stateDirs, *followers+1, *followers, nHandovers, nCrashes, *window)
	if cg != nil {
		fmt.Fprintf(&t, "| metric | gossip | client-go on a Lease | client-go ÷ gossip |\n|---|---:|---:|---:|\n")
	} else {
		fmt.Fprintf(&t, "| metric | gossip |\n|---|---:|\n")
	}
	row := func(name string, gv time.Duration, cv func(*benchtest.LeaseResult) time.Duration) {
		if cg == nil {
			fmt.Fprintf(&t, "| %s | %s |\n", name, ms(gv))
			return
		}
		fmt.Fprintf(&t, "| %s | %s | %s | %s |\n", name, ms(gv), ms(cv(cg)), benchtest.Ratio(float64(cv(cg)), float64(gv)))
	}
	row("graceful hand-over p50", pct(g.handover, 0.5), func(r *benchtest.LeaseResult) time.Duration { return pct(r.Handover, 0.5) })
	row("graceful hand-over p99", pct(g.handover, 0.99), func(r *benchtest.LeaseResult) time.Duration { return pct(r.Handover, 0.99) })
	// client-go has no turns: a crashed follower changes nothing there,
	// so its column repeats its hand-over.
	row("release right after a follower's crash p50", pct(g.crashRelease, 0.5), func(r *benchtest.LeaseResult) time.Duration { return pct(r.Handover, 0.5) })
	row("release right after a follower's crash p99", pct(g.crashRelease, 0.99), func(r *benchtest.LeaseResult) time.Duration { return pct(r.Handover, 0.99) })
	row("crash fail-over − LeaseDuration p50", pct(g.failover, 0.5), func(r *benchtest.LeaseResult) time.Duration { return pct(r.Failover, 0.5) })
	row("crash fail-over − LeaseDuration p99", pct(g.failover, 0.99), func(r *benchtest.LeaseResult) time.Duration { return pct(r.Failover, 0.99) })
	if cg != nil {
		fmt.Fprintf(&t, "| messages/min, 1 leader + %d followers (gossip: protocol messages; client-go: API requests) | %.1f | %.1f (%s) | %s |\n",
			*followers, s.allLock/w, cg.PerMinute, benchtest.PerMinute(cg.Requests, *window), benchtest.Ratio(cg.PerMinute, s.allLock/w))
	}
	moved := ""
	if s.moved {
		moved = "; LEADERSHIP MOVED during the window (a renewal missed its deadline), so the split by sender is not that of a steady state"
	}
	fmt.Fprintf(&t, "\nSteady state (leader %s, %d renewals in %v%s):\n\n", s.leader, s.renewals, *window, moved)
	fmt.Fprintf(&t, "| traffic | per renewal | per minute |\n|---|---:|---:|\n")
	pr := func(v float64) string {
		if s.renewals == 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f", v/float64(s.renewals))
	}
	fmt.Fprintf(&t, "| protocol messages, all candidates | %s | %.1f |\n", pr(s.allLock), s.allLock/w)
	fmt.Fprintf(&t, "| … sent by the leader (%s) | %s | %.1f |\n", perMin(s.leaderLock, *window), pr(sum(s.leaderLock)), sum(s.leaderLock)/w)
	fmt.Fprintf(&t, "| … replies by followers to the leader's rounds (%s) | %s | %.1f |\n", perMin(s.followerRepl, *window), pr(sum(s.followerRepl)), sum(s.followerRepl)/w)
	fmt.Fprintf(&t, "| … sent by followers of their own (%s) | %s | %.1f |\n", perMin(s.followerOwn, *window), pr(sum(s.followerOwn)), sum(s.followerOwn)/w)
	fmt.Fprintf(&t, "| memberlist's own: UDP packets (probes, acks, gossip), all candidates | %s | %.1f |\n", pr(s.mlPackets), s.mlPackets/w)
	fmt.Fprintf(&t, "| memberlist's own: TCP streams (push/pull, TCP probes), all candidates | %s | %.1f |\n", pr(s.mlStreams), s.mlStreams/w)
	fmt.Fprintf(&t, "| memberlist's own, sent by followers | %s | %.1f |\n", pr(s.mlFollower), s.mlFollower/w)
	fmt.Println()
	fmt.Println(t.String())
}
