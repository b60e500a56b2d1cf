//go:build unix

package shard_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/utils/clock"

	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/shard"
)

// wedgeLock is a lock whose Get, while wedged, blocks until released,
// ignoring its context: a store call that never returns.
type wedgeLock struct {
	lock.Interface
	wedged  *atomic.Bool
	release <-chan struct{}
}

func (l wedgeLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	if l.wedged.Load() {
		<-l.release
	}
	return l.Interface.Get(ctx)
}

// TestWedgedStoreCallFailsTheWatchdog: the watchdog check on an
// Ownership (what /livez serves under shard.RunOrDie) passes while Run's
// loop comes round, fails once a store read has hung past its bound
// (RenewDeadline: the read ignores its context), and passes again when the
// read returns. The shards keep running meanwhile: the slot's renewals
// are writes, on their own handle.
func TestWedgedStoreCallFailsTheWatchdog(t *testing.T) {
	dir := t.TempDir()
	var wedged atomic.Bool
	release := make(chan struct{})
	opt := fast()
	opt.Locks = func(name string, fresh bool) (lock.Interface, error) {
		l, err := file.New(context.Background(), file.Options{Path: filepath.Join(dir, name), Identity: "a"})
		return wedgeLock{l, &wedged, release}, err
	}
	var own shard.Ownership
	opt.Ownership = &own
	watchdog := healthz.Watchdog(&own, 100*time.Millisecond, clock.RealClock{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- shard.Run(ctx, opt, 2, func(ctx context.Context, _ int) { <-ctx.Done() }) }()
	poll.Until(t, "a to run both shards", 30*time.Second, func() bool { return len(own.Status().Shards.Owned) == 2 })
	st := own.Status()
	if now := time.Now(); !st.HeartbeatDue.After(now) || st.HeartbeatDue.After(now.Add(opt.LeaseDuration+opt.RenewDeadline+time.Second)) {
		t.Fatalf("heartbeat due %v, %v from now; want within LeaseDuration + RenewDeadline", st.HeartbeatDue, time.Until(st.HeartbeatDue))
	}
	if err := watchdog.Check(nil); err != nil {
		t.Fatalf("watchdog fails on a loop that comes round: %v", err)
	}

	wedged.Store(true)
	wedgedAt := time.Now()
	var why error
	poll.Until(t, "the watchdog to fail on the hung read", 2*(opt.LeaseDuration+opt.RenewDeadline), func() bool {
		why = watchdog.Check(nil)
		return why != nil
	})
	t.Logf("watchdog failed %v after the store hung: %v", time.Since(wedgedAt).Round(time.Millisecond), why)
	if n := len(own.Status().Shards.Owned); n != 2 {
		t.Errorf("a runs %d shards while its reads hang, want 2 (its renewals go on)", n)
	}
	wedged.Store(false)
	close(release)
	poll.Until(t, "the watchdog to pass again", 2*opt.LeaseDuration, func() bool { return watchdog.Check(nil) == nil })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := own.Status(); !st.HeartbeatDue.IsZero() {
		t.Errorf("heartbeat due %v after Run returned, want none", st.HeartbeatDue)
	}
}
