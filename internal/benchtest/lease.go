package benchtest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	clientgole "k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

// LeaseElector is an elector implementation run on a Kubernetes Lease.
type LeaseElector struct {
	Name string
	// Start returns how to start its candidates on Lease ns/lease.
	Start func(cfg *rest.Config, ns, lease string, t Timing) Start
}

// Ours is this module's elector on backend/k8s.
var Ours = LeaseElector{Name: "leaderelection", Start: func(cfg *rest.Config, ns, lease string, t Timing) Start {
	return func(tb testing.TB, id string, release bool, led func(string)) func() {
		client := testserver.Clientset(tb, cfg)
		l, err := k8s.New(context.Background(), k8s.Options{Client: client, Namespace: ns, Name: lease, Identity: id, DisableEvents: true})
		if err != nil {
			tb.Fatal(err)
		}
		e, err := leaderelection.NewElector(leaderelection.Config{
			Lock: l, LeaseDuration: t.LeaseDuration, RenewDeadline: t.RenewDeadline, RetryPeriod: t.RetryPeriod,
			ReleaseOnCancel: release,
			Callbacks: leaderelection.Callbacks{OnStartedLeading: func(ctx context.Context) {
				led(id)
				<-ctx.Done()
			}},
		})
		if err != nil {
			tb.Fatal(err)
		}
		stop := RunUntilStopped(func(ctx context.Context) {
			e.Run(ctx) //nolint:errcheck // a lost lease shows in the measurements
		})
		return func() { stop(); l.Close() }
	}
}}

// ClientGo is client-go's elector with its stock LeaseLock.
var ClientGo = LeaseElector{Name: "client-go", Start: func(cfg *rest.Config, ns, lease string, t Timing) Start {
	return func(tb testing.TB, id string, release bool, led func(string)) func() {
		client := testserver.Clientset(tb, cfg)
		le, err := clientgole.NewLeaderElector(clientgole.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: ns, Name: lease},
				Client:     client.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: id},
			},
			LeaseDuration: t.LeaseDuration, RenewDeadline: t.RenewDeadline, RetryPeriod: t.RetryPeriod,
			ReleaseOnCancel: release,
			Callbacks: clientgole.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { led(id) },
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			tb.Fatal(err)
		}
		return RunUntilStopped(le.Run)
	}
}}

// RunUntilStopped runs run in a goroutine until stop, which waits for it.
func RunUntilStopped(run func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	return func() { cancel(); <-done }
}

// LeasePlan is what MeasureLease measures.
type LeasePlan struct {
	Timing
	// Candidates: 1 leader and the rest followers.
	Candidates int
	// Window is how long API requests are counted in steady state; zero
	// skips the steady state.
	Window time.Duration
	// Handovers and Crashes are how many of each are measured.
	Handovers, Crashes int
}

// LeaseResult are MeasureLease's figures.
type LeaseResult struct {
	Handover, Failover []time.Duration
	// Requests are the API requests by verb in the window.
	Requests  map[string]int
	PerMinute float64
}

// namespaces numbers MeasureLease's namespaces: one per call.
var namespaces atomic.Int64

// MeasureLease measures el on kube, in a namespace of its own: API
// requests per minute for 1 leader and the rest following (counted by a
// rest.Config.WrapTransport round-tripper), graceful hand-overs (the
// leader is told to stop, with ReleaseOnCancel, until the next leader's
// OnStartedLeading) and crash fail-overs beyond LeaseDuration (the leader
// stops renewing without releasing; from the RenewTime of its last
// renewal to the next leader's OnStartedLeading, minus LeaseDuration).
func MeasureLease(tb testing.TB, kube *testserver.Kube, el LeaseElector, p LeasePlan) *LeaseResult {
	ctx := context.Background()
	admin := testserver.Clientset(tb, kube.Config())
	ns := testserver.CreateNamespace(tb, admin, fmt.Sprintf("bench-%s-%d", el.Name, namespaces.Add(1)))
	var counter testserver.KubeRequestCounter
	cfg := counter.CountRequests(kube.Config())
	r := &LeaseResult{}
	within := 4 * p.LeaseDuration

	// Steady state: 1 leader, the rest following.
	f := NewFleet(tb, el.Name, el.Start(cfg, ns, "steady", p.Timing), true, within)
	for range p.Candidates {
		f.Add(f.NewID())
	}
	leader := f.NextLeader()
	if p.Window > 0 {
		time.Sleep(p.RetryPeriod * 3) // let every follower settle into its loop; not synchronisation
		counter.Reset()
		time.Sleep(p.Window) // the measurement window
		r.Requests = counter.Counts()
		r.PerMinute = float64(counter.Total()) / p.Window.Minutes()
	}
	r.Handover, _ = f.Handovers(leader, p.Handovers, p.RetryPeriod)
	f.StopAll()

	f = NewFleet(tb, el.Name, el.Start(cfg, ns, "crash", p.Timing), false, within)
	for range p.Candidates {
		f.Add(f.NewID())
	}
	leader = f.NextLeader()
	leases := admin.CoordinationV1().Leases(ns)
	r.Failover, _ = f.Crashes(leader, p.Crashes, p.LeaseDuration, 2*p.RetryPeriod, func(string) func(string) time.Time {
		// Read as the crashed leader stopped: its last write is in.
		lease, err := leases.Get(ctx, "crash", metav1.GetOptions{})
		if err != nil {
			tb.Fatal(err)
		}
		return func(string) time.Time { return lease.Spec.RenewTime.Time }
	})
	f.StopAll()
	return r
}
