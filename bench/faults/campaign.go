package main

import (
	"context"
	"fmt"
	"math/rand"
	"os/exec"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/fence"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

// campaign is one run of faults against replicas on one backend.
type campaign struct {
	cfg      Config
	tb       testing.TB
	rng      *rand.Rand
	bin, dir string
	sinkPath string
	store    store
	obs      *observer
	sobs     *shardObserver // the sharded mode's, instead of obs
	firsts   []string       // the schedule's opening: every kind once

	mu       sync.Mutex
	slots    []*replica
	paused   map[string]map[int64]bool // identity → terms in which it was paused
	pauses   map[string][]pauseSpan    // identity → when it was paused
	problems []string                  // unexpected exits, /livez failures
	exits    int                       // unexpected exits
	livez    int                       // /livez failures

	res *Result
}

// settleTimeout bounds how long a campaign waits for a leader after a
// fault before it reports the backend as stuck.
const settleTimeout = 60 * time.Second

// Run runs a campaign and returns what it measured. Servers and replicas
// live until tb's cleanups run. An error means the campaign could not go
// on (no leader for a minute, a server that would not start); violations of
// safety are in the Result.
func Run(tb testing.TB, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxFaults == 0 {
		cfg.MaxFaults = 10 * cfg.Transitions
	}
	logf := cfg.Logf
	if logf == nil {
		cfg.Logf = func(string, ...any) {}
		logf = cfg.Logf
	}
	c := &campaign{cfg: cfg, tb: tb, rng: rand.New(rand.NewSource(cfg.Seed)), dir: tb.TempDir(), paused: map[string]map[int64]bool{}, pauses: map[string][]pauseSpan{}}
	c.sinkPath = filepath.Join(c.dir, "fence")
	c.bin = cfg.ExampleBin
	if c.bin == "" {
		c.bin = filepath.Join(c.dir, "example")
		out, err := exec.Command("go", "build", "-tags", faultTag, "-o", c.bin, "github.com/b3df926d/leaderelection/example").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("building the example: %v\n%s", err, out)
		}
	}
	logf("starting the %s store", cfg.Backend)
	records := []string{""}
	if cfg.Shards > 0 {
		records = shardRecords()
	}
	st, err := newStore(tb, cfg.Backend, cfg.Replicas, c.dir, records)
	if err != nil {
		return nil, err
	}
	c.store = st
	c.res = newResult(cfg)
	c.obs = newObserver(c)
	round := c.obs.round
	if cfg.Shards > 0 {
		c.sobs = newShardObserver(c)
		round = c.sobs.round
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); poll(ctx, round) }()
	// The observer must have stopped before finish reads what it wrote.
	stopObserver := sync.OnceFunc(func() { cancel(); wg.Wait() })
	defer func() {
		stopObserver()
		c.mu.Lock()
		for _, r := range c.slots {
			if r != nil {
				r.stop()
			}
		}
		c.mu.Unlock()
	}()

	slots := make([]*replica, cfg.Replicas)
	for i := range slots {
		if slots[i], err = c.startReplica(i); err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.slots = slots[:i+1]
		c.mu.Unlock()
	}
	if gs, ok := c.store.(*gossipStore); ok {
		// Every replica follows the partition plan, or the example
		// lacks the fault hook.
		if err := gs.applied(slots, false); err != nil {
			return nil, err
		}
	}
	reqs0 := c.store.requests()
	start := time.Now()
	logf("%d replicas of %s on %s; faults %v; seed %d", cfg.Replicas, c.bin, cfg.Backend, cfg.kinds(), cfg.Seed)
	stopped := func() bool {
		select {
		case <-cfg.Stop:
			logf("stopping early, as asked")
			return true
		default:
			return false
		}
	}
	for c.res.Transitions < cfg.Transitions && c.res.FaultsTotal < cfg.MaxFaults && !stopped() {
		if err := c.settle(); err != nil {
			stopObserver()
			c.finish(start, reqs0)
			return c.res, err
		}
		kind, num := c.pick(), c.res.FaultsTotal+1
		if err := c.inject(kind); err != nil {
			stopObserver()
			c.finish(start, reqs0)
			return c.res, fmt.Errorf("fault %d (%s): %w", num, kind, err)
		}
		if n := c.res.FaultsTotal; n%50 == 0 {
			what := "transitions"
			if cfg.Shards > 0 {
				what = "moves"
			}
			logf("%d faults, %d %s, %v", n, c.res.Transitions, what, time.Since(start).Round(time.Second))
		}
	}
	err = c.settle()
	stopObserver()
	c.finish(start, reqs0)
	return c.res, err
}

// weights make faults that change the leader more frequent, so a campaign
// reaches its transitions sooner; every kind still occurs.
var weights = map[string]int{KillLeader: 3, TermLeader: 2, PauseLong: 2, LatencyHigh: 2, DeleteRecord: 2, PartitionMinority: 2}

func (c *campaign) pick() string {
	kinds := c.cfg.kinds()
	// Every kind once first, in a seeded order, so that short campaigns
	// cover them all.
	if c.firsts == nil {
		c.firsts = slices.Clone(kinds)
		c.rng.Shuffle(len(c.firsts), func(i, j int) { c.firsts[i], c.firsts[j] = c.firsts[j], c.firsts[i] })
	}
	if c.res.FaultsTotal < len(c.firsts) {
		return c.firsts[c.res.FaultsTotal]
	}
	total := 0
	for _, k := range kinds {
		total += max(weights[k], 1)
	}
	n := c.rng.Intn(total)
	for _, k := range kinds {
		if n -= max(weights[k], 1); n < 0 {
			return k
		}
	}
	return kinds[len(kinds)-1]
}

// live returns the replicas that are running now.
func (c *campaign) live() []*replica {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*replica
	for _, r := range c.slots {
		if r != nil && !r.exited() {
			out = append(out, r)
		}
	}
	return out
}

// pausedIn reports whether id was paused while leading term.
func (c *campaign) pausedIn(id string, term int64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.paused[id][term]
}

func (c *campaign) problem(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	msg := fmt.Sprintf(format, args...)
	c.problems = append(c.problems, msg)
	c.cfg.Logf("problem: %s", msg)
}

// settle restarts replicas that exited (recording unexpected exits), waits
// until every replica answers /livez, and until a leader has written to the
// fencing sink in its term.
func (c *campaign) settle() error {
	if c.sobs != nil {
		return c.settleShards(time.Now())
	}
	for {
		restarted, err := c.restartExited()
		if err != nil || !restarted {
			return err
		}
		// Replicas came back: check them, and that none exited meanwhile.
	}
}

// restartExited restarts replicas that exited and waits for a working
// leader; it reports whether it restarted any.
func (c *campaign) restartExited() (bool, error) {
	restarted, err := c.restartSlots()
	if err != nil {
		return false, err
	}
	deadline := time.Now().Add(settleTimeout)
	c.checkReplicas(deadline)
	sink := fence.Open(c.sinkPath)
	for {
		if n, t, _ := c.obs.current(); n > 0 {
			if st, err := sink.ReadState(); err == nil && st.Highest >= t.term && c.stillLeads(t) {
				// A replica that exited while we waited (a leader that
				// lost its lease exits) is restarted before the next
				// fault too: settle goes round again.
				return restarted || c.anyExited(), nil
			}
		}
		if time.Now().After(deadline) {
			n, t, _ := c.obs.current()
			return false, fmt.Errorf("no leader that works within %v of the last fault (%d tenures, last %+v); logs in %s", settleTimeout, n, t, c.dir)
		}
		time.Sleep(10 * time.Millisecond) // polling the sink and the observer
	}
}

// superviseDuring restarts replicas that exit until the returned function
// is called, as a Deployment would while a fault lasts: during a partition,
// a leader that lost its lease on the majority side exits, and without it
// the side has no quorum left (two faults at once).
func (c *campaign) superviseDuring() (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			if _, err := c.restartSlots(); err != nil {
				c.problem("restarting a replica during a fault: %v", err)
			}
		}
	}()
	return func() { close(quit); <-done }
}

// restartSlots starts again every replica that exited, recording
// unexpected exits; it reports whether it restarted any.
func (c *campaign) restartSlots() (bool, error) {
	restarted := false
	for i := range c.slots {
		c.mu.Lock()
		r := c.slots[i]
		c.mu.Unlock()
		if !r.exited() {
			continue
		}
		if p := r.exitProblem(); p != "" {
			c.mu.Lock()
			c.exits++
			c.mu.Unlock()
			c.problem("unexpected exit: %s", p)
		}
		nr, err := c.startReplica(i)
		if err != nil {
			return false, err
		}
		c.mu.Lock()
		c.slots[i] = nr
		c.mu.Unlock()
		restarted = true
	}
	return restarted, nil
}

// checkReplicas waits until every running replica answers /livez (and,
// for gossip, is ready: a voter restarted without its state must have
// recovered its record, or a partition right after an amnesia restart is
// two faults at once), counting those that do not by the deadline.
func (c *campaign) checkReplicas(deadline time.Time) {
	checks := []func(*replica) error{(*replica).livez}
	if c.cfg.Backend == "gossip" {
		checks = append(checks, (*replica).gossipReady)
	}
	for _, r := range c.live() {
		for _, check := range checks {
			var err error
			for err = check(r); err != nil && !r.exited() && time.Now().Before(deadline); err = check(r) {
				time.Sleep(10 * time.Millisecond) // polling a process that has no readiness signal
			}
			if err != nil && !r.exited() {
				c.mu.Lock()
				c.livez++
				c.mu.Unlock()
				c.problem("%s: %v (log %s)", r.id, err, r.log)
			}
		}
	}
}

// anyExited reports whether a replica's process has exited.
func (c *campaign) anyExited() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range c.slots {
		if r.exited() {
			return true
		}
	}
	return false
}

// stillLeads reports whether the replica of tenure t is running and says
// it leads in t's term.
func (c *campaign) stillLeads(t tenure) bool {
	i := c.leaderSlot(t.id)
	if i < 0 {
		return false
	}
	c.mu.Lock()
	r := c.slots[i]
	c.mu.Unlock()
	st, ok := r.status(context.Background())
	return ok && st.Leading && st.Term == t.term
}

// waitStopped waits until r has exited or no longer says it leads term.
func (c *campaign) waitStopped(r *replica, term int64) error {
	deadline := time.Now().Add(settleTimeout)
	for {
		if r.exited() {
			return nil
		}
		if st, ok := r.status(context.Background()); ok && (!st.Leading || st.Term != term) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s still leads term %d or does not answer %v after the fault (log %s)", r.id, term, settleTimeout, r.log)
		}
		time.Sleep(10 * time.Millisecond) // polling a process that has no exit signal we can select on with /status
	}
}

// leaderSlot returns the slot of the running replica with identity id, or -1.
func (c *campaign) leaderSlot(id string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, r := range c.slots {
		if r != nil && r.id == id && !r.exited() {
			return i
		}
	}
	return -1
}

// follower returns a running replica that does not lead.
func (c *campaign) follower(leader string) *replica {
	var fs []*replica
	for _, r := range c.live() {
		if r.id != leader {
			fs = append(fs, r)
		}
	}
	if len(fs) == 0 {
		return nil
	}
	return fs[c.rng.Intn(len(fs))]
}

// expectsTransition lists the faults after which a new leader (or term)
// must come; after the others the campaign watches one LeaseDuration for
// a transition before it moves on. With Recover, a leader whose renewals
// all missed RenewDeadline (latency-high) may lead again in its term.
func (c *campaign) expectsTransition(kind string) bool {
	switch kind {
	case KillLeader, TermLeader, PauseLong, PartitionMinority:
		return true
	case LatencyHigh:
		return !c.cfg.Recover
	}
	return false
}

func (c *campaign) inject(kind string) (err error) {
	if c.sobs != nil {
		return c.injectShard(kind)
	}
	n, cur, _ := c.obs.current()
	slot := c.leaderSlot(cur.id)
	if slot < 0 {
		return fmt.Errorf("leader %s is not running", cur.id)
	}
	c.mu.Lock()
	leader := c.slots[slot]
	c.mu.Unlock()
	t0 := time.Now()
	// target is a replica the fault ended or woke: the campaign waits for it
	// to exit, or to stop leading, before the next fault, so that faults do
	// not pile up on a cluster with no replica left to take over.
	var target *replica
	switch kind {
	case KillLeader:
		leader.signal(syscall.SIGKILL)
		target = leader
	case TermLeader:
		leader.signal(syscall.SIGTERM)
		target = leader
	case KillFollower, RestartFollower:
		f := c.follower(cur.id)
		if f == nil {
			return fmt.Errorf("no follower is running")
		}
		if kind == KillFollower {
			f.signal(syscall.SIGKILL)
			break
		}
		f.signal(syscall.SIGTERM)
		select {
		case <-f.done:
		case <-time.After(settleTimeout):
			return fmt.Errorf("%s still running %v after SIGTERM", f.id, settleTimeout)
		}
		// settle restarts it before the next fault.
	case PauseLong, PauseShort:
		c.mu.Lock()
		if c.paused[leader.id] == nil {
			c.paused[leader.id] = map[int64]bool{}
		}
		c.paused[leader.id][cur.term] = true
		c.mu.Unlock()
		c.pause(leader, kind)
		if kind == PauseLong {
			target = leader
		}
	case StoreRestart, LatencyHigh, LatencyLow, DropConns:
		if err := c.storeFault(kind); err != nil {
			return err
		}
	case StoreOutage:
		if err := c.outage(); err != nil {
			return err
		}
		// Measured from the store's return: whoever leads next, and
		// when (a recovering leader in its term, or a follower).
		back := time.Now()
		c.res.FaultsTotal++
		c.res.Faults[kind]++
		return c.afterOutage(n, cur, back)
	case DeleteRecord:
		if err := c.store.deleteRecord(""); err != nil {
			return err
		}
	case PartitionMinority, PartitionMajority:
		heal, perr := c.partition(kind, n, leader.id)
		if perr != nil {
			return perr
		}
		// Healed once the campaign has seen what followed the cut.
		defer func() {
			if herr := heal(); err == nil {
				err = herr
			}
		}()
		if kind == PartitionMinority {
			// It steps down (within RenewDeadline; RunOrDie then
			// exits), the majority elects.
			target = leader
		}
	case RestartAmnesia:
		f := c.follower(cur.id)
		if f == nil {
			return fmt.Errorf("no follower is running")
		}
		slot := c.leaderSlot(f.id)
		f.signal(syscall.SIGKILL)
		select {
		case <-f.done:
		case <-time.After(settleTimeout):
			return fmt.Errorf("%s still running %v after SIGKILL", f.id, settleTimeout)
		}
		if err := c.store.(*gossipStore).wipe(slot); err != nil {
			return err
		}
		// settle starts it again, with no state: it must recover from
		// a quorum of the others before it answers.
	default:
		return fmt.Errorf("unknown fault %q", kind)
	}
	c.res.FaultsTotal++
	c.res.Faults[kind]++
	if target != nil {
		if err := c.waitStopped(target, cur.term); err != nil {
			return err
		}
	}

	wait := c.cfg.LeaseDuration
	if c.expectsTransition(kind) {
		wait = settleTimeout
	} else if kind == PartitionMajority {
		wait = c.cfg.partitionHold()
	}
	tn, ok := c.obs.waitTenure(n, time.Now().Add(wait))
	if !ok {
		if c.expectsTransition(kind) {
			return fmt.Errorf("no new leader within %v after %s of %s in term %d", wait, kind, cur.id, cur.term)
		}
		c.cfg.Logf("fault %d: %s; %s still leads term %d", c.res.FaultsTotal, kind, cur.id, cur.term)
		return nil
	}
	c.transition(kind, cur, tn, t0)
	return nil
}

// hold keeps a fault on for its duration.
func hold(d time.Duration) {
	time.Sleep(d) // the fault's duration, not synchronisation
}

// pause stops r (SIGSTOP) for pause-long's or pause-short's duration, and
// records when.
func (c *campaign) pause(r *replica, kind string) {
	d := c.cfg.pauseShort()
	if kind == PauseLong {
		d = c.cfg.pauseLong()
	}
	span := pauseSpan{from: time.Now()}
	r.paused.Store(true)
	r.cmd.Process.Signal(syscall.SIGSTOP)
	hold(d)
	r.cmd.Process.Signal(syscall.SIGCONT)
	r.paused.Store(false)
	span.to = time.Now()
	c.mu.Lock()
	c.pauses[r.id] = append(c.pauses[r.id], span)
	c.mu.Unlock()
}

// storeFault injects one of the store's faults, all but delete-record,
// and returns once it is over.
func (c *campaign) storeFault(kind string) error {
	switch kind {
	case StoreOutage:
		return c.outage()
	case StoreRestart:
		return c.store.restart()
	case LatencyHigh, LatencyLow:
		p := c.store.proxy()
		d, how := c.cfg.latencyLow(), 2*c.cfg.LeaseDuration
		if kind == LatencyHigh {
			d, how = c.cfg.latencyHigh(), c.cfg.LeaseDuration+c.cfg.RenewDeadline
		}
		p.SetDelay(d)
		hold(how)
		p.SetDelay(0)
	case DropConns:
		c.store.proxy().CutConnections()
	default:
		return fmt.Errorf("%s is not a store fault", kind)
	}
	return nil
}

// outage makes the store unreachable for store-outage's duration.
func (c *campaign) outage() error {
	restore, err := c.store.outage(c.live())
	if err != nil {
		return err
	}
	hold(c.cfg.outage())
	return restore()
}

// transition records a new tenure tn after a fault of kind that began
// (or, for store-outage, ended) at t0, in term cur.
func (c *campaign) transition(kind string, cur, tn tenure, t0 time.Time) {
	c.cfg.Logf("fault %d: %s; %s (term %d) took over from %s (term %d) in %v", c.res.FaultsTotal, kind, tn.id, tn.term, cur.id, cur.term, tn.first.Sub(t0).Round(time.Millisecond))
	c.res.Transitions++
	c.res.TransitionsBy[kind]++
	c.res.takeover(kind, tn.first.Sub(t0))
	if tn.term <= cur.term {
		c.res.TermRegressions++
		c.res.violation("term went from %d (%s) to %d (%s) after %s", cur.term, cur.id, tn.term, tn.id, kind)
	}
}

// afterOutage waits, after the store came back at back, until a replica
// leads: the leader before the outage in its own term (recovered, with
// Recover), or a new tenure (a transition). n is the tenures before.
func (c *campaign) afterOutage(n int, cur tenure, back time.Time) error {
	deadline := back.Add(settleTimeout)
	for {
		if tn, ok := c.obs.waitTenure(n, time.Now().Add(sampleEvery)); ok {
			c.transition(StoreOutage, cur, tn, back)
			return nil
		}
		if c.stillLeads(cur) {
			d := time.Since(back)
			c.cfg.Logf("fault %d: %s; %s leads term %d again, %v after the store's return", c.res.FaultsTotal, StoreOutage, cur.id, cur.term, d.Round(time.Millisecond))
			c.res.recovered(d)
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no leader within %v after the store's return (%s led term %d before the outage)", settleTimeout, cur.id, cur.term)
		}
	}
}

// partition cuts the voters in two: the leader with a minority
// (partition-leader-minority) or with a majority (partition-leader-majority).
// heal, called once the campaign has seen what followed, keeps a
// minority-leader partition one LeaseDuration more (by then the minority's
// followers have seen the lease run out too), heals, and counts as a
// violation every tenure that a replica of the minority began while cut
// off (n: the tenures before the fault).
func (c *campaign) partition(kind string, n int, leader string) (heal func() error, err error) {
	gs := c.store.(*gossipStore)
	var others []string
	for _, id := range gs.ids {
		if id != leader {
			others = append(others, id)
		}
	}
	c.rng.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	k := len(gs.ids) / 2 // the largest minority
	var minority, majority []string
	if kind == PartitionMinority {
		minority, majority = append([]string{leader}, others[:k-1]...), others[k-1:]
	} else {
		minority, majority = others[:k], append([]string{leader}, others[k:]...)
	}
	stopSupervising := c.superviseDuring()
	heal = func() error {
		if kind == PartitionMinority {
			time.Sleep(c.cfg.LeaseDuration) // the fault's duration, not synchronisation
		}
		stopSupervising()
		healed := time.Now()
		err := gs.partition(nil, c.live())
		for _, t := range c.obs.tenuresFrom(n) {
			if t.first.Before(healed) && slices.Contains(minority, t.id) {
				c.res.MinorityElections++
				c.res.violation("%s led term %d (first seen %s) while cut off in the minority %v of %s",
					t.id, t.term, t.first.Format(time.RFC3339Nano), minority, kind)
			}
		}
		return err
	}
	return heal, gs.partition([][]string{minority, majority}, c.live())
}

// finish completes the result from the observer, the sink and the store.
func (c *campaign) finish(start time.Time, reqs0 int64) {
	r := c.res
	r.Elapsed = time.Since(start).Round(time.Second).String()
	if reqs := c.store.requests(); reqs >= 0 && reqs0 >= 0 {
		r.StoreRequestsPerMinute = float64(reqs-reqs0) / time.Since(start).Minutes()
	} else {
		r.StoreRequestsPerMinute = -1
	}
	defer func() {
		c.mu.Lock()
		r.UnexpectedExits, r.LivezFailures = c.exits, c.livez
		r.Problems = append(r.Problems, c.problems...)
		c.mu.Unlock()
		r.Dir = c.dir
	}()
	if c.sobs != nil {
		c.finishShards()
		return
	}
	c.obs.mu.Lock()
	r.Overlaps += len(c.obs.overlaps)
	for _, o := range c.obs.overlaps {
		r.violation("overlap: %s", o)
	}
	r.StaleLeaderReports = c.obs.stale
	r.LongestGapMS = c.obs.longest.Milliseconds()
	owners := c.obs.owners
	r.Samples = c.obs.samples
	c.obs.mu.Unlock()

	r.checkSink(c.sinkPath, "", owners, func(e fence.Entry) bool { return c.pausedIn(e.ID, e.Term) })
}

// checkSink reads the fencing sink at path (what names it in a violation,
// "" for the one sink) into r, and adds its accepted writes to owners
// (term → identities). A write the sink fenced is overlapping work unless
// excused (its writer was paused in its term).
func (r *Result) checkSink(path, what string, owners map[int64]map[string]bool, excused func(fence.Entry) bool) {
	log, err := fence.Open(path).ReadLog()
	if err != nil {
		r.violation("reading the sink%s: %v", what, err)
	}
	var last int64
	for _, e := range log {
		if owners[e.Term] == nil {
			owners[e.Term] = map[string]bool{}
		}
		if !e.Accepted {
			r.FencedWrites++
			if !excused(e) {
				r.Overlaps++
				r.violation("overlapping work%s: %s's write in term %d, never paused, was fenced at %s", what, e.ID, e.Term, e.At.Format(time.RFC3339Nano))
			}
			continue
		}
		owners[e.Term][e.ID] = true
		r.AcceptedWrites++
		if e.Term < last {
			r.OutOfOrderWrites++
			r.violation("sink%s accepted term %d after term %d (%s at %s)", what, e.Term, last, e.ID, e.At.Format(time.RFC3339Nano))
		}
		last = e.Term
	}
	for term, ids := range owners {
		if len(ids) > 1 {
			r.TermsHeldTwice++
			r.violation("term %d%s held by %v", term, what, keys(ids))
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func freePort(tb testing.TB) int { return testserver.FreePort(tb) }
