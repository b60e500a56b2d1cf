//go:build unix

package shard_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
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

// faultyLock is a lock whose Get, while wedged, blocks until released,
// ignoring its context (a store call that never returns), and whose Get
// and Update fail while failing (a store that is down).
type faultyLock struct {
	lock.Interface
	wedged, failing *atomic.Bool
	release         <-chan struct{}
}

var errStoreDown = errors.New("store down")

func (l faultyLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	if l.wedged.Load() {
		<-l.release
	}
	if l.failing.Load() {
		return nil, nil, errStoreDown
	}
	return l.Interface.Get(ctx)
}

func (l faultyLock) Update(ctx context.Context, rec lock.Record) error {
	if l.failing.Load() {
		return errStoreDown
	}
	return l.Interface.Update(ctx, rec)
}

// faultyStore returns fast options on files whose handles are
// faultyLocks, and an Ownership they report to.
func faultyStore(t *testing.T, wedged, failing *atomic.Bool, release <-chan struct{}) (shard.Options, *shard.Ownership) {
	dir := t.TempDir()
	opt := fast()
	opt.Locks = func(name string, fresh bool) (lock.Interface, error) {
		l, err := file.New(context.Background(), file.Options{Path: filepath.Join(dir, name), Identity: "a"})
		return faultyLock{l, wedged, failing, release}, err
	}
	opt.Ownership = new(shard.Ownership)
	return opt, opt.Ownership
}

// TestWedgedStoreCallFailsTheWatchdog: the watchdog check on an
// Ownership (what /livez serves under shard.RunOrDie) passes while Run's
// loop comes round, fails once a store read has hung past its bound
// (RenewDeadline: the read ignores its context), and passes again when the
// read returns. The shards keep running meanwhile: the slot's renewals
// are writes, on their own handle.
func TestWedgedStoreCallFailsTheWatchdog(t *testing.T) {
	var wedged, failing atomic.Bool
	release := make(chan struct{})
	opt, own := faultyStore(t, &wedged, &failing, release)
	watchdog := healthz.Watchdog(own, 100*time.Millisecond, clock.RealClock{})
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

// TestStoreFailuresFailTheStoreCheck: while the store's calls fail, the
// store readiness check on an Ownership (/readyz under shard.RunOrDie)
// fails naming the error, and the failures are counted
// (leader_election_store_errors_total); it passes again once a call
// succeeds.
func TestStoreFailuresFailTheStoreCheck(t *testing.T) {
	var wedged, failing atomic.Bool
	opt, own := faultyStore(t, &wedged, &failing, nil)
	store := healthz.StoreCheck(own)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- shard.Run(ctx, opt, 2, func(ctx context.Context, _ int) { <-ctx.Done() }) }()
	poll.Until(t, "a to run both shards", 30*time.Second, func() bool { return len(own.Status().Shards.Owned) == 2 })
	if err := store.Check(nil); err != nil || own.Status().StoreErrors != 0 {
		t.Fatalf("store check on a working store: %v, %d errors", err, own.Status().StoreErrors)
	}
	failing.Store(true)
	var why error
	poll.Until(t, "the store check to fail", 2*opt.LeaseDuration, func() bool { why = store.Check(nil); return why != nil })
	if !strings.Contains(why.Error(), errStoreDown.Error()) || own.Status().StoreErrors == 0 {
		t.Fatalf("store check %v with %d errors counted; want it to name %q and count", why, own.Status().StoreErrors, errStoreDown)
	}
	failing.Store(false)
	poll.Until(t, "the store check to pass again", 2*opt.LeaseDuration, func() bool { return store.Check(nil) == nil })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}
