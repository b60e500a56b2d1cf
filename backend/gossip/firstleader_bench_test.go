package gossip

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	clientgole "k8s.io/client-go/tools/leaderelection"

	leaderelection "github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/internal/benchtest"
)

// BenchmarkFirstLeaderOnNewLock measures, on a new election, the time from
// the first voter's start to the first OnStartedLeading, every voter a
// candidate running its elector from its start (a new StatefulSet):
// 3 and 5 voters, with empty StateDirs (the lock proves itself new:
// lock.ErrNeverWritten) and without StateDir (the voters re-initialise the
// register after ReinitializeAfter, LeaseDuration + RenewDeadline, and the
// first elector then claims the lock), for this module's elector and for
// client-go's on the same locks, at 15s/10s/2s and 2s/1.5s/1s. Reported as
// ms/first-leader, and for this module's elector the claims its electors
// made on the way (claims/op: 0 when the first leader came from the proof):
//
//	go test -run '^$' -bench FirstLeaderOnNewLock -benchtime 5x ./backend/gossip
func BenchmarkFirstLeaderOnNewLock(b *testing.B) {
	for _, d := range benchtest.FirstLeaderTimings {
		for _, n := range []int{3, 5} {
			for _, state := range []struct {
				name      string
				stateDirs bool
			}{{"empty-statedir", true}, {"no-statedir", false}} {
				for _, el := range []string{"leaderelection", "client-go"} {
					b.Run(fmt.Sprintf("%s/%d-voters/%s/%s", d.Name, n, state.name, el), func(b *testing.B) {
						var total time.Duration
						var claims int32
						for i := 0; i < b.N; i++ {
							took, c := firstLeader(b, n, state.stateDirs, d.Timing, el == "client-go")
							b.Logf("sample %d: first leader %v after the first start, %d claims", i, took.Round(time.Millisecond), c)
							total += took
							claims += c
						}
						b.ReportMetric(benchtest.Millis(total)/float64(b.N), "ms/first-leader")
						if el == "leaderelection" {
							b.ReportMetric(float64(claims)/float64(b.N), "claims/op")
						}
					})
				}
			}
		}
	}
}

// firstLeader starts n voters of a new election, each running an elector
// (client-go's if clientGo) at timing t from its start, and returns the
// time from the first start to the first OnStartedLeading, and how many
// times this module's electors claimed the lock.
func firstLeader(b *testing.B, n int, stateDirs bool, t benchtest.Timing, clientGo bool) (time.Duration, int32) {
	b.Helper()
	discard := logr.Discard()
	tune := func(o *Options) { o.ReinitializeAfter, o.Logger = t.LeaseDuration+t.RenewDeadline, &discard }
	var claims atomic.Int32
	claimLog := funcr.New(func(_, args string) {
		if strings.Contains(args, `"msg"="Claimed the lock`) {
			claims.Add(1)
		}
	}, funcr.Options{})
	led := make(chan struct{})
	var once sync.Once
	lead := func(ctx context.Context) { once.Do(func() { close(led) }); <-ctx.Done() }
	var stops []func()
	began := time.Now()
	c := startCluster(b, n, stateDirs, tune)
	defer c.close()
	for _, v := range c.voters {
		l := c.lock(v)
		var run func(context.Context)
		if clientGo {
			cfg := clientgole.LeaderElectionConfig{Lock: l, ReleaseOnCancel: true, Callbacks: clientgole.LeaderCallbacks{
				OnStartedLeading: lead, OnStoppedLeading: func() {},
			}}
			cfg.LeaseDuration, cfg.RenewDeadline, cfg.RetryPeriod = t.LeaseDuration, t.RenewDeadline, t.RetryPeriod
			le, err := clientgole.NewLeaderElector(cfg)
			if err != nil {
				b.Fatal(err)
			}
			run = le.Run
		} else {
			e, err := leaderelection.NewElector(leaderelection.Config{
				Lock: l, LeaseDuration: t.LeaseDuration, RenewDeadline: t.RenewDeadline, RetryPeriod: t.RetryPeriod,
				ReleaseOnCancel: true, Logger: &claimLog, Callbacks: leaderelection.Callbacks{OnStartedLeading: lead},
			})
			if err != nil {
				b.Fatal(err)
			}
			run = func(ctx context.Context) {
				if err := e.Run(ctx); err != nil {
					b.Errorf("%s: Run: %v", v, err)
				}
			}
		}
		stops = append(stops, benchtest.RunUntilStopped(run))
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()
	within := 2 * (t.LeaseDuration + t.RenewDeadline + t.RenewDeadline + max(t.LeaseDuration, t.RetryPeriod*22/10))
	select {
	case <-led:
		return time.Since(began), claims.Load()
	case <-time.After(within):
		b.Fatalf("%d voters: no leader %v after the first start", n, within)
		return 0, 0
	}
}
