package benchtest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	clientgole "k8s.io/client-go/tools/leaderelection"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// FirstLeaderTimings are the durations the first-leader benchmarks measure
// at: Kubernetes' defaults, and the example's.
var FirstLeaderTimings = []struct {
	Name string
	Timing
}{
	{"15s-10s-2s", Timing{15 * time.Second, 10 * time.Second, 2 * time.Second}},
	{"2s-1.5s-1s", Timing{2 * time.Second, 1500 * time.Millisecond, time.Second}},
}

// NewLock returns a handle for identity id on the lock called name, which
// no candidate has used before: a record never written.
type NewLock func(tb testing.TB, name, id string) lock.Interface

// FirstLeader measures, per timing, the time from Run to the first
// OnStartedLeading of one candidate on a brand-new lock, for this module's
// elector (sub-benchmark <timing>/leaderelection, on ours) and for
// client-go's (<timing>/client-go, on clientGo), reported as
// ms/first-leader. clientGo may be ours: client-go's elector runs on any
// lock.Interface.
func FirstLeader(b *testing.B, ours, clientGo NewLock) {
	n := 0
	name := func() string { n++; return fmt.Sprintf("first-%d-%d", time.Now().UnixNano(), n) }
	for _, d := range FirstLeaderTimings {
		b.Run(d.Name+"/leaderelection", func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				total += TimeToLead(b, ours(b, name(), "first"), d.Timing)
			}
			b.ReportMetric(Millis(total)/float64(b.N), "ms/first-leader")
		})
		b.Run(d.Name+"/client-go", func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				total += clientGoTimeToLead(b, clientGo(b, name(), "first"), d.Timing)
			}
			b.ReportMetric(Millis(total)/float64(b.N), "ms/first-leader")
		})
	}
}

// TimeToLead runs this module's elector on l at t until it starts leading,
// stops it (releasing the lock), and returns how long it took from Run to
// OnStartedLeading. It fails tb if the candidate does not lead within a
// fresh claim's longest wait and as much again.
func TimeToLead(tb testing.TB, l lock.Interface, t Timing) time.Duration {
	tb.Helper()
	return timeToLead(tb, t, func(led func()) (func(context.Context), error) {
		e, err := leaderelection.NewElector(leaderelection.Config{
			Lock: l, LeaseDuration: t.LeaseDuration, RenewDeadline: t.RenewDeadline, RetryPeriod: t.RetryPeriod,
			ReleaseOnCancel: true,
			Callbacks:       leaderelection.Callbacks{OnStartedLeading: func(ctx context.Context) { led(); <-ctx.Done() }},
		})
		if err != nil {
			return nil, err
		}
		return func(ctx context.Context) {
			if err := e.Run(ctx); err != nil {
				tb.Errorf("%s: Run: %v", l.Describe(), err)
			}
		}, nil
	})
}

// clientGoTimeToLead is TimeToLead for client-go's elector.
func clientGoTimeToLead(tb testing.TB, l lock.Interface, t Timing) time.Duration {
	tb.Helper()
	return timeToLead(tb, t, func(led func()) (func(context.Context), error) {
		cfg := clientgole.LeaderElectionConfig{Lock: l, ReleaseOnCancel: true, Callbacks: clientgole.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) { led(); <-ctx.Done() },
			OnStoppedLeading: func() {},
		}}
		cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = t.LeaseDuration, t.RenewDeadline, t.RetryPeriod
		le, err := clientgole.NewLeaderElector(cfg)
		if err != nil {
			return nil, err
		}
		return le.Run, nil
	})
}

// timeToLead makes an elector whose OnStartedLeading calls led, runs it
// until it leads, stops it, and returns the time from Run to led.
func timeToLead(tb testing.TB, t Timing, elector func(led func()) (run func(context.Context), err error)) time.Duration {
	tb.Helper()
	led := make(chan struct{})
	run, err := elector(func() { close(led) })
	if err != nil {
		tb.Fatal(err)
	}
	start := time.Now()
	stop := RunUntilStopped(run)
	defer stop()
	within := 2 * (t.RenewDeadline + max(t.LeaseDuration, t.RetryPeriod*22/10) + t.RenewDeadline)
	select {
	case <-led:
		return time.Since(start)
	case <-time.After(within):
		tb.Fatalf("no leader %v after Run on a new lock", within)
		return 0
	}
}

// NewLockLeadsAtOnceADeletedOneDoesNot checks a store that proves a lock
// new (lock.ErrNeverWritten) on the unused lock called name: one candidate
// at Kubernetes' defaults leads within RenewDeadline (without the proof it
// would take a claim standing RenewDeadline + LeaseDuration, 25 s); once
// d deleted the record, a handle that never saw it is told only that it
// is missing (a deletion, not a new lock); once reset removed the store's
// mark as well, the lock is new again.
func NewLockLeadsAtOnceADeletedOneDoesNot(t *testing.T, h locktest.Harness, d locktest.Deleter, name string, reset func()) {
	t.Helper()
	timing := FirstLeaderTimings[0].Timing
	if took := TimeToLead(t, h.NewLock(t, name, "first"), timing); took > timing.RenewDeadline {
		t.Fatalf("the first candidate on a new lock led after %v: it waited as if the record could have been deleted", took)
	}
	d.Delete(t, name)
	ctx := context.Background()
	if _, _, err := h.NewLock(t, name, "fresh").Get(ctx); !lock.IsNotFound(err) || errors.Is(err, lock.ErrNeverWritten) {
		t.Fatalf("Get after the record was deleted = %v, want a plain not-found (a deletion, not a new lock)", err)
	}
	reset()
	if _, _, err := h.NewLock(t, name, "reset").Get(ctx); !errors.Is(err, lock.ErrNeverWritten) {
		t.Fatalf("Get with the record and the store's mark deleted (a reset) = %v, want lock.ErrNeverWritten", err)
	}
}
