// Package k8s_test benchmarks this module's elector on the Lease backend
// against client-go's elector with its stock LeaseLock, in one process and
// one run, on one real kube-apiserver, with the same durations:
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 30m ./bench/k8s
//
// It prints a markdown table (docs/benchmarks.md holds the latest):
// graceful hand-over latency (the leader is told to stop, with
// ReleaseOnCancel → the next leader's OnStartedLeading), crash fail-over
// beyond LeaseDuration (the leader stops renewing without releasing; from
// the RenewTime of its last renewal → the next leader's OnStartedLeading,
// minus LeaseDuration), and API requests per minute for 1 leader and 9
// followers, counted by a rest.Config.WrapTransport round-tripper.
package k8s_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clientgole "k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

var (
	leaseDuration = flag.Duration("lease-duration", 15*time.Second, "LeaseDuration for both electors")
	renewDeadline = flag.Duration("renew-deadline", 10*time.Second, "RenewDeadline for both electors")
	retryPeriod   = flag.Duration("retry-period", 2*time.Second, "RetryPeriod for both electors")
	candidates    = flag.Int("candidates", 10, "candidates per elector: 1 leader and the rest followers")
	window        = flag.Duration("window", time.Minute, "how long API requests are counted in steady state")
	handovers     = flag.Int("handovers", 20, "graceful hand-overs measured per elector")
	crashes       = flag.Int("crashes", 10, "crash fail-overs measured per elector")
)

func TestMain(m *testing.M) {
	klog.SetLogger(logr.Discard()) // client-go's elector logs every attempt; the table is the output
	code := m.Run()
	testserver.StopSharedKube()
	os.Exit(code)
}

// elector starts one candidate of an implementation; stop cancels it and
// waits until it has finished (released, if release was set).
type elector struct {
	name  string
	start func(b *testing.B, cfg *rest.Config, ns, lease, id string, release bool, led func(id string)) (stop func())
}

var ours = elector{name: "leaderelection", start: func(b *testing.B, cfg *rest.Config, ns, lease, id string, release bool, led func(string)) func() {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	l, err := k8s.New(context.Background(), k8s.Options{Client: client, Namespace: ns, Name: lease, Identity: id, DisableEvents: true})
	if err != nil {
		b.Fatal(err)
	}
	e, err := leaderelection.NewElector(leaderelection.Config{
		Lock: l, LeaseDuration: *leaseDuration, RenewDeadline: *renewDeadline, RetryPeriod: *retryPeriod,
		ReleaseOnCancel: release,
		Callbacks: leaderelection.Callbacks{OnStartedLeading: func(ctx context.Context) {
			led(id)
			<-ctx.Done()
		}},
	})
	if err != nil {
		b.Fatal(err)
	}
	stop := runUntilStopped(func(ctx context.Context) {
		e.Run(ctx) //nolint:errcheck // a lost lease shows in the measurements
	})
	return func() { stop(); l.Close() }
}}

var clientGo = elector{name: "client-go", start: func(b *testing.B, cfg *rest.Config, ns, lease, id string, release bool, led func(string)) func() {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		b.Fatal(err)
	}
	le, err := clientgole.NewLeaderElector(clientgole.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: ns, Name: lease},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: id},
		},
		LeaseDuration: *leaseDuration, RenewDeadline: *renewDeadline, RetryPeriod: *retryPeriod,
		ReleaseOnCancel: release,
		Callbacks: clientgole.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { led(id) },
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	return runUntilStopped(le.Run)
}}

// runUntilStopped runs run in a goroutine until stop, which waits for it.
func runUntilStopped(run func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	return func() { cancel(); <-done }
}

// fleet is a set of candidates of one implementation on one Lease.
type fleet struct {
	b       *testing.B
	el      elector
	cfg     *rest.Config
	ns      string
	lease   string
	release bool
	gen     int

	mu      sync.Mutex
	running map[string]func()
	leaders chan leadership
}

type leadership struct {
	id string
	at time.Time
}

func newFleet(b *testing.B, el elector, cfg *rest.Config, ns, lease string, release bool, n int) *fleet {
	f := &fleet{b: b, el: el, cfg: cfg, ns: ns, lease: lease, release: release,
		running: map[string]func(){}, leaders: make(chan leadership, 100)}
	for range n {
		f.add()
	}
	return f
}

// add starts a candidate with a fresh identity (a restarted client-go
// candidate would otherwise re-acquire its own unexpired lease at once).
func (f *fleet) add() {
	f.gen++
	id := fmt.Sprintf("%s-%d", f.el.name, f.gen)
	stop := f.el.start(f.b, f.cfg, f.ns, f.lease, id, f.release, func(id string) {
		f.leaders <- leadership{id: id, at: time.Now()}
	})
	f.mu.Lock()
	f.running[id] = stop
	f.mu.Unlock()
}

func (f *fleet) stop(id string) {
	f.mu.Lock()
	stop := f.running[id]
	delete(f.running, id)
	f.mu.Unlock()
	stop()
}

func (f *fleet) stopAll() {
	f.mu.Lock()
	ids := make([]string, 0, len(f.running))
	for id := range f.running {
		ids = append(ids, id)
	}
	f.mu.Unlock()
	for _, id := range ids {
		f.stop(id)
	}
}

func (f *fleet) nextLeader() leadership {
	select {
	case l := <-f.leaders:
		return l
	case <-time.After(4 * *leaseDuration):
		f.b.Fatalf("%s: no leader within %v", f.el.name, 4**leaseDuration)
		return leadership{}
	}
}

type result struct {
	handover, failover []time.Duration
	requests           map[string]int
	perMinute          float64
}

func measure(b *testing.B, kube *testserver.Kube, admin kubernetes.Interface, el elector) *result {
	ctx := context.Background()
	ns := "bench-" + el.name
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		b.Fatal(err)
	}
	var counter testserver.KubeRequestCounter
	cfg := counter.CountRequests(kube.Config())
	r := &result{}

	// Steady state: 1 leader, the rest following.
	f := newFleet(b, el, cfg, ns, "steady", true, *candidates)
	leader := f.nextLeader()
	time.Sleep(*retryPeriod * 3) // let every follower settle into its loop; not synchronisation
	counter.Reset()
	time.Sleep(*window) // the measurement window
	r.requests = counter.Counts()
	r.perMinute = float64(counter.Total()) / window.Minutes()

	// Graceful hand-overs: the leader is told to stop and releases.
	for range *handovers {
		start := time.Now()
		f.stop(leader.id)
		next := f.nextLeader()
		r.handover = append(r.handover, next.at.Sub(start))
		f.add()
		leader = next
		time.Sleep(*retryPeriod) // let the new follower settle; not synchronisation
	}
	f.stopAll()

	// Crashes: the leader stops renewing without releasing.
	f = newFleet(b, el, cfg, ns, "crash", false, *candidates)
	leader = f.nextLeader()
	leases := admin.CoordinationV1().Leases(ns)
	for range *crashes {
		time.Sleep(*retryPeriod * 2) // let the leader renew at least once; not synchronisation
		f.stop(leader.id)
		lease, err := leases.Get(ctx, "crash", metav1.GetOptions{})
		if err != nil {
			b.Fatal(err)
		}
		lastRenew := lease.Spec.RenewTime.Time
		next := f.nextLeader()
		r.failover = append(r.failover, next.at.Sub(lastRenew)-*leaseDuration)
		f.add()
		leader = next
	}
	f.stopAll()
	return r
}

func BenchmarkLeaseElection(b *testing.B) {
	if b.N > 1 {
		b.Skip("runs once: use -benchtime 1x")
	}
	kube := testserver.SharedKube(b)
	admin, err := kubernetes.NewForConfig(kube.Config())
	if err != nil {
		b.Fatal(err)
	}
	results := map[string]*result{}
	for _, el := range []elector{ours, clientGo} {
		results[el.name] = measure(b, kube, admin, el)
	}
	o, c := results[ours.name], results[clientGo.name]
	b.ReportMetric(pct(o.handover, 0.99).Seconds()*1e3, "ours-handover-p99-ms")
	b.ReportMetric(pct(c.handover, 0.99).Seconds()*1e3, "clientgo-handover-p99-ms")
	b.ReportMetric(o.perMinute, "ours-req/min")
	b.ReportMetric(c.perMinute, "clientgo-req/min")

	var t strings.Builder
	fmt.Fprintf(&t, "LeaseDuration %v, RenewDeadline %v, RetryPeriod %v; %d candidates (1 leader + %d followers); %d hand-overs, %d crashes each.\n\n",
		*leaseDuration, *renewDeadline, *retryPeriod, *candidates, *candidates-1, *handovers, *crashes)
	fmt.Fprintf(&t, "| metric | leaderelection | client-go | client-go ÷ ours |\n|---|---:|---:|---:|\n")
	row := func(name string, ov, cv time.Duration) {
		fmt.Fprintf(&t, "| %s | %s | %s | %s |\n", name, ms(ov), ms(cv), ratio(float64(cv), float64(ov)))
	}
	row("graceful hand-over p50", pct(o.handover, 0.5), pct(c.handover, 0.5))
	row("graceful hand-over p99", pct(o.handover, 0.99), pct(c.handover, 0.99))
	row("crash fail-over − LeaseDuration p50", pct(o.failover, 0.5), pct(c.failover, 0.5))
	row("crash fail-over − LeaseDuration p99", pct(o.failover, 0.99), pct(c.failover, 0.99))
	fmt.Fprintf(&t, "| API requests/min, 1 leader + %d followers | %.1f (%s) | %.1f (%s) | %s |\n",
		*candidates-1, o.perMinute, verbs(o.requests, *window), c.perMinute, verbs(c.requests, *window), ratio(c.perMinute, o.perMinute))
	fmt.Println()
	fmt.Println(t.String())
}

// pct is the p-th percentile (nearest rank) of ds.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", d.Seconds()*1e3) }

func ratio(a, b float64) string {
	if b <= 0 {
		return "∞"
	}
	return fmt.Sprintf("%.1f×", a/b)
}

// verbs lists requests per minute by verb.
func verbs(counts map[string]int, w time.Duration) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, float64(counts[k])/w.Minutes()))
	}
	return strings.Join(parts, ", ")
}
