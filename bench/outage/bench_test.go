// Package outage_test measures what an API-server outage does to elected
// controllers, on a real kube-apiserver, with and without recovery
// (Option.Recover) and the write gate (issue #25's targets):
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 30m ./bench/outage
//	go test -run '^$' -bench . -benchtime 1x -count 3 -timeout 30m ./bench/outage -args -only '^recover$'
//
// Outage: replicas, each with a ConfigMap informer in Option.Standby and
// a leader's function that creates ConfigMaps through the gate, reach the
// API server through one proxy, which refuses connections for --outage
// (as a server that is down). Counted per mode: restarts (Run ended with
// an error, as RunOrDie would exit; the replica starts again from scratch,
// as a Deployment would), starts of the leader's function, relists (LIST
// requests and watch-list streams, the reflector's relist by default, that
// the API server answered after its return; also the apiserver's own LIST
// count), and the time from the return until a replica leads again.
//
// Takeover: the leader alone reaches the API server through a proxy that
// refuses for --outage, a second replica directly; it takes over. Counted:
// the old leader's writes that reached the API server after the new
// leader's term began, through the gate, and through a client that
// bypasses it.
//
// The replicas are Run calls in this process, each with clients of its
// own; it prints markdown tables (docs/elector.md holds the latest).
package outage_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection/internal/benchtest"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

var (
	timing   = benchtest.TimingFlags("")
	outage   = flag.Duration("outage", 30*time.Second, "how long the proxy refuses connections")
	replicas = flag.Int("replicas", 3, "replicas in the outage runs")
	logFile  = flag.String("log-file", "", "write the electors' logs to this file (default: discarded)")
	only     = flag.String("only", "", "run only the runs whose name matches this regular expression (outage runs: the mode; takeover runs: \"takeover \" and the mode, e.g. '^recover$')")
)

func TestMain(m *testing.M) {
	flag.Parse()
	if *logFile == "" {
		klog.SetLogger(logr.Discard()) // every failed renewal logs; the tables are the output
	} else {
		fs := flag.NewFlagSet("klog", flag.ExitOnError)
		klog.InitFlags(fs)
		_ = fs.Parse([]string{"--logtostderr=false", "--log_file=" + *logFile})
	}
	code := testserver.RunTests(m)
	klog.Flush()
	os.Exit(code)
}

// outageResult is what one outage run measured.
type outageResult struct {
	m                mode
	restarts, starts int // during and after the outage
	stoppedLeading   time.Duration
	toLead           time.Duration // from the return to a leader
	sameTerm         bool          // the old leader leads again, in its term
	heldOn           bool          // ... and still does a lease and a RetryPeriod after the return: no follower took over
	lists, watches   int           // relists and resumed watches after the return, client side
	serverLists      int64         // the apiserver's count of LIST on configmaps after the return
	resumed          time.Duration // from the return until every informer got an answer
}

// takeoverResult is what one takeover run measured.
type takeoverResult struct {
	m                mode
	leaseOnly        bool // only the old leader's Lease requests are cut; its writes still reach the server
	landedAfter      int  // the old leader's writes that reached the server after the new term began
	refused          int  // the old leader's writes the gate refused
	oldEnded         time.Duration
	takeoverAfter    time.Duration
	oldTerm, newTerm int64
}

// round counts BenchmarkStoreOutage's runs (-count), to give each its own
// namespaces on the shared API server.
var round int

func BenchmarkStoreOutage(b *testing.B) {
	if b.N > 1 {
		b.Skip("runs once: use -benchtime 1x")
	}
	round++
	kube := testserver.SharedKube(b)
	t := *timing
	modes := []mode{
		{name: "baseline"},
		{name: "recampaign", recampaign: true},
		{name: "recover", recover: true, recampaign: true},
		{name: "baseline, leader alone", replicas: 1},
		{name: "recover, leader alone", recover: true, recampaign: true, replicas: 1},
	}
	match, err := regexp.Compile(*only)
	if err != nil {
		b.Fatalf("-only: %v", err)
	}
	var outs []outageResult
	for _, m := range modes {
		if match.MatchString(m.name) {
			outs = append(outs, measureOutage(b, kube, m, t))
		}
	}
	var takes []takeoverResult
	for _, leaseOnly := range []bool{false, true} {
		for _, m := range []mode{{name: "recover, gated", recover: true}, {name: "recover, ungated", recover: true, ungated: true}} {
			if match.MatchString("takeover " + m.name) {
				takes = append(takes, measureTakeover(b, kube, m, leaseOnly, t))
			}
		}
	}

	var s strings.Builder
	fmt.Fprintf(&s, "LeaseDuration %v, RenewDeadline %v, RetryPeriod %v; API server unreachable (connections refused) for %v; %d replicas (Run calls in one process) unless alone, each with a ConfigMap informer in Standby.\n\n",
		t.LeaseDuration, t.RenewDeadline, t.RetryPeriod, *outage, *replicas)
	fmt.Fprintf(&s, "| mode | restarts | leader function starts | leader stopped leading after | back → a leader | same leader, same term | still in that term a lease after | relists after the return (client: LIST + watch-list) | watches resumed | apiserver LIST configmaps after the return | back → every informer answered |\n|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|\n")
	for _, o := range outs {
		fmt.Fprintf(&s, "| %s | %d | %d | %s | %s | %v | %v | %d | %d | %d | %s |\n", o.m.name, o.restarts, o.starts, sec(o.stoppedLeading), sec(o.toLead), o.sameTerm, o.heldOn, o.lists, o.watches, o.serverLists, sec(o.resumed))
	}
	fmt.Fprintf(&s, "\nTakeover: the leader cut off for %v, a second replica reaching the API server; the old leader writes a ConfigMap every %v.\n\n", *outage, writeEvery)
	fmt.Fprintf(&s, "| old leader's writes | cut off | takeover after | old term ended after | old leader's writes landed after the new term began | refused by its gate |\n|---|---|---:|---:|---:|---:|\n")
	for _, r := range takes {
		cut := "everything (Lease and writes)"
		if r.leaseOnly {
			cut = "its Lease requests only"
		}
		fmt.Fprintf(&s, "| %s | %s | %s | %s | %d | %d |\n", r.m.name, cut, sec(r.takeoverAfter), sec(r.oldEnded), r.landedAfter, r.refused)
	}
	fmt.Println()
	fmt.Println(s.String())
}

func sec(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func slug(s string) string {
	return fmt.Sprintf("%s-%d", strings.NewReplacer(", ", "-", " ", "-").Replace(s), round)
}

func measureOutage(b testing.TB, kube *testserver.Kube, m mode, t benchtest.Timing) outageResult {
	plain := kubernetes.NewForConfigOrDie(kube.Config())
	ns := testserver.CreateNamespace(b, plain, "outage-"+slug(m.name))
	proxy := testserver.StartProxy(b, kube.Addr)
	via := kube.ConfigVia(kube.Config(), proxy.Addr())
	var rs []*replica
	n := m.replicas
	if n == 0 {
		n = *replicas
	}
	for i := range n {
		rs = append(rs, &replica{id: fmt.Sprintf("r%d", i), m: m, ns: ns, lease: "outage", leaseCfg: via, appCfg: via})
	}
	f := startFleet(rs, t)
	defer f.stop()
	var old *replica
	var term int64
	waitFor(b, m.name+": a leader, every informer synced", 2*time.Minute, func() bool {
		old, term = f.leader()
		for _, r := range rs {
			if !r.synced.Load() {
				return false
			}
		}
		return old != nil && old.starts.Load() > 0
	})
	restarts0, starts0 := f.restarts(), f.starts()

	down := time.Now()
	restore := proxy.Refuse()
	stopped := waitFor(b, m.name+": the leader to stop leading", *outage, func() bool { ok, _ := old.leading(); return !ok })
	time.Sleep(time.Until(down.Add(*outage))) // the outage's length: the fault, not synchronisation
	lists0, err := kube.Requests("configmaps", "LIST")
	if err != nil {
		b.Fatal(err)
	}
	for _, r := range rs {
		r.reqs.mark()
	}
	if err := restore(); err != nil {
		b.Fatal(err)
	}
	back := time.Now()
	var who *replica
	var newTerm int64
	led := waitFor(b, m.name+": a leader after the return", 2*time.Minute, func() bool { who, newTerm = f.leader(); return who != nil })
	// The reflector backs off up to 30s between attempts while the server
	// is down: wait until every informer got an answer, and one
	// RetryPeriod more for what follows.
	waitFor(b, m.name+": every informer to reach the server again", 2*time.Minute, func() bool {
		for _, r := range rs {
			if r.reqs.resumedAt().IsZero() {
				return false
			}
		}
		return true
	})
	time.Sleep(t.RetryPeriod) // a window to count what follows the resumption, not synchronisation
	// A follower that read the record after the return waits a lease
	// from that read (with Recover): by then, a takeover would show.
	time.Sleep(time.Until(back.Add(t.LeaseDuration + 2*t.RetryPeriod))) // a window, not synchronisation
	still, stillTerm := f.leader()
	res := outageResult{m: m, restarts: f.restarts() - restarts0, starts: f.starts() - starts0,
		stoppedLeading: stopped.Sub(down), toLead: led.Sub(back), sameTerm: who == old && newTerm == term,
		heldOn: who == old && newTerm == term && still == old && stillTerm == term}
	for _, r := range rs {
		res.lists += r.reqs.get("list")
		res.watches += r.reqs.get("watch")
		res.resumed = max(res.resumed, r.reqs.resumedAt().Sub(back))
	}
	lists1, err := kube.Requests("configmaps", "LIST")
	if err != nil {
		b.Fatal(err)
	}
	res.serverLists = lists1 - lists0
	for _, r := range rs {
		if p := r.lastErr.Load(); p != nil {
			b.Logf("%s: %s's last Run ended with %v", m.name, r.id, *p)
		}
	}
	b.Logf("%s: %+v", m.name, res)
	return res
}

// landed counts the ConfigMaps r created, as the API server has them.
func landed(tb testing.TB, c kubernetes.Interface, r *replica) int {
	tb.Helper()
	l, err := c.CoreV1().ConfigMaps(r.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "writer=" + r.lease + "-" + r.id})
	if err != nil {
		tb.Fatalf("listing %s's writes: %v", r.id, err)
	}
	return len(l.Items)
}

func measureTakeover(b testing.TB, kube *testserver.Kube, m mode, leaseOnly bool, t benchtest.Timing) takeoverResult {
	plain := kubernetes.NewForConfigOrDie(kube.Config())
	name := "takeover-" + slug(m.name)
	if leaseOnly {
		name += "-lease-only"
	}
	ns := testserver.CreateNamespace(b, plain, name)
	proxy := testserver.StartProxy(b, kube.Addr)
	via := kube.ConfigVia(kube.Config(), proxy.Addr())
	a := &replica{id: "a", m: m, ns: ns, lease: "takeover", leaseCfg: via, appCfg: via}
	if leaseOnly {
		a.appCfg = kube.Config()
	}
	fa := startFleet([]*replica{a}, t)
	defer fa.stop()
	waitFor(b, name+": a to lead and write", 2*time.Minute, func() bool { ok, _ := a.leading(); return ok && a.written.Load() > 0 })
	_, oldTerm := a.leading()
	bb := &replica{id: "b", m: mode{name: "follower", recover: true}, ns: ns, lease: "takeover", leaseCfg: kube.Config(), appCfg: kube.Config()}
	fb := startFleet([]*replica{bb}, t)
	defer fb.stop()
	waitFor(b, name+": b to see a", time.Minute, func() bool {
		le := bb.leadership.Load()
		return le != nil && le.Leader() == "a" && bb.synced.Load()
	})
	down := time.Now()
	restore := proxy.Refuse()
	took := waitFor(b, name+": b to take over", 2*time.Minute, func() bool { ok, _ := bb.leading(); return ok && bb.starts.Load() > 0 })
	_, newTerm := bb.leading()
	atTakeover := landed(b, plain, a)
	time.Sleep(time.Until(down.Add(*outage))) // the outage's length: the fault, not synchronisation
	lead := *a.lead.Load()
	if err := restore(); err != nil {
		b.Fatal(err)
	}
	waitFor(b, name+": a's term to end", 2*time.Minute, func() bool { return lead.Err() != nil && a.ended.Load() != nil })
	ended := *a.ended.Load()
	time.Sleep(time.Second) // writes still in flight land, or not: a window, not synchronisation
	res := takeoverResult{m: m, leaseOnly: leaseOnly, landedAfter: landed(b, plain, a) - atTakeover, refused: int(a.refused.Load()),
		takeoverAfter: took.Sub(down), oldEnded: ended.Sub(down), oldTerm: oldTerm, newTerm: newTerm}
	if p := a.lastErr.Load(); p != nil {
		b.Logf("%s: a's Run ended with %v (%d starts of its function, %d restarts)", name, *p, a.starts.Load(), a.restarts.Load())
	}
	b.Logf("%s: %+v", name, res)
	return res
}
