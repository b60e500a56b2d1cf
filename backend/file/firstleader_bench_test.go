//go:build unix

package file_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	k8sle "k8s.io/client-go/tools/leaderelection"

	leaderelection "github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/file"
)

// BenchmarkFirstLeaderOnNewLock measures the time from Run to the first
// OnStartedLeading on a brand-new file lock, for this module's elector and
// for client-go's (which creates the record at once, taking no care for a
// record deleted under a working leader), at Kubernetes' defaults
// 15s/10s/2s and at 2s/1.5s/1s. Reported as ms/first-leader per elector:
//
//	go test -run '^$' -bench FirstLeaderOnNewLock -benchtime 20x ./backend/file
func BenchmarkFirstLeaderOnNewLock(b *testing.B) {
	for _, d := range []struct {
		name                 string
		lease, renew, period time.Duration
	}{
		{"15s-10s-2s", 15 * time.Second, 10 * time.Second, 2 * time.Second},
		{"2s-1.5s-1s", 2 * time.Second, 1500 * time.Millisecond, time.Second},
	} {
		b.Run(d.name+"/leaderelection", func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				l := newLockIn(b)
				led := make(chan struct{})
				e, err := leaderelection.NewElector(leaderelection.Config{
					Lock: l, LeaseDuration: d.lease, RenewDeadline: d.renew, RetryPeriod: d.period,
					Callbacks: leaderelection.Callbacks{OnStartedLeading: func(ctx context.Context) { close(led); <-ctx.Done() }},
				})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				start := time.Now()
				go func() { done <- e.Run(ctx) }()
				<-led
				total += time.Since(start)
				cancel()
				<-done
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/first-leader")
		})
		b.Run(d.name+"/client-go", func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				l := newLockIn(b)
				led := make(chan struct{})
				ctx, cancel := context.WithCancel(context.Background())
				le, err := k8sle.NewLeaderElector(k8sle.LeaderElectionConfig{
					Lock: l, LeaseDuration: d.lease, RenewDeadline: d.renew, RetryPeriod: d.period,
					Callbacks: k8sle.LeaderCallbacks{
						OnStartedLeading: func(ctx context.Context) { close(led); <-ctx.Done() },
						OnStoppedLeading: func() {},
					},
				})
				if err != nil {
					b.Fatal(err)
				}
				done := make(chan struct{})
				start := time.Now()
				go func() { le.Run(ctx); close(done) }()
				<-led
				total += time.Since(start)
				cancel()
				<-done
			}
			b.ReportMetric(float64(total.Microseconds())/1000/float64(b.N), "ms/first-leader")
		})
	}
}

// newLockIn returns a handle on a new file lock in a directory of its own.
func newLockIn(b *testing.B) *file.Lock {
	l, err := file.New(context.Background(), file.Options{Path: filepath.Join(b.TempDir(), "leader.json"), Identity: "first"})
	if err != nil {
		b.Fatal(err)
	}
	return l
}
