package s3_test

import (
	"context"
	"testing"
	"time"

	s3lock "github.com/b3df926d/leaderelection/backend/s3"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// follower returns a lock for identity "b" whose requests c counts.
func follower(t *testing.T, s *store, name string, c *testserver.RequestCounter, interval time.Duration) *s3lock.Lock {
	t.Helper()
	l := newLock(t, s.counted(c), name, "b", func(o *s3lock.Options) { o.ReleaseCheckInterval = interval })
	c.Reset() // forget the start-up check
	return l
}

func get(t *testing.T, l lock.Interface) *lock.Record {
	t.Helper()
	rec, _, err := l.Get(context.Background())
	if err != nil {
		t.Fatalf("%s: Get: %v", l.Identity(), err)
	}
	return rec
}

func wantGETs(t *testing.T, c *testserver.RequestCounter, want int, when string) {
	t.Helper()
	if got := c.Count("GET"); got != want {
		t.Fatalf("%s: %d GET requests, want %d", when, got, want)
	}
}

func TestFollowerReadsOncePerReleaseCheckInterval(t *testing.T) {
	s := startGoFakeS3(t, nil)
	ctx := context.Background()
	leader := newLock(t, s.viaProxy(), "cached", "a", nil)
	if err := leader.Create(ctx, locktest.NewRecord("a", 1)); err != nil {
		t.Fatal(err)
	}
	var c testserver.RequestCounter
	const interval = 400 * time.Millisecond
	b := follower(t, s, "cached", &c, interval)

	start := time.Now()
	first := get(t, b)
	for range 10 {
		if got := get(t, b); got.RenewTime != first.RenewTime {
			t.Fatal("a cached Get returned another record")
		}
	}
	if time.Since(start) < interval {
		wantGETs(t, &c, 1, "11 Gets of a live lease within the release-check interval")
	}

	// The leader renews; the follower's cache does not know, but its
	// version does not match any more: a take-over from it loses, and the
	// loss makes the next Get read.
	renewed := locktest.NewRecord("a", 1)
	renewed.RenewTime.Time = renewed.RenewTime.Add(time.Second)
	if err := leader.Update(ctx, renewed); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) < interval {
		if got := get(t, b); got.RenewTime != first.RenewTime {
			t.Fatal("Get read the store within the release-check interval")
		}
		if err := b.Update(ctx, locktest.NewRecord("b", 2)); !lock.IsConflict(err) {
			t.Fatalf("take-over from a cached, superseded version returned %v, want a conflict", err)
		}
	}
	c.Reset()
	if got := get(t, b); !got.RenewTime.Equal(&renewed.RenewTime) {
		t.Fatalf("Get after a lost race reads renew time %v, want %v", got.RenewTime, renewed.RenewTime)
	}
	wantGETs(t, &c, 1, "Get after a lost race")

	// A graceful release is noticed within the interval.
	released := locktest.NewRecord("", 1)
	if err := leader.Update(ctx, released); err != nil {
		t.Fatal(err)
	}
	time.Sleep(interval) // let the cache's release check fall due
	if got := get(t, b); got.HolderIdentity != "" {
		t.Fatalf("Get %v after a release still reads holder %q", interval, got.HolderIdentity)
	}
	if err := b.Update(ctx, locktest.NewRecord("b", 2)); err != nil {
		t.Fatalf("take-over after the release: %v", err)
	}
}

func TestCacheEndsWhenObservedLeaseCouldExpire(t *testing.T) {
	s := startGoFakeS3(t, nil)
	ctx := context.Background()
	leader := newLock(t, s.viaProxy(), "expiry", "a", nil)
	rec := locktest.NewRecord("a", 1)
	rec.LeaseDurationSeconds = 1
	if err := leader.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	var c testserver.RequestCounter
	b := follower(t, s, "expiry", &c, time.Hour) // no early release checks

	start := time.Now()
	get(t, b)
	read := time.Now() // the lease runs from the first Get's read, at most this late
	get(t, b)
	if time.Since(start) < time.Second {
		wantGETs(t, &c, 1, "Gets within the observed lease")
	}
	time.Sleep(time.Second - time.Since(read))
	get(t, b)
	wantGETs(t, &c, 2, "Get once the observed lease could have expired")
	// The same version read again does not restart the lease: it runs from
	// when this candidate first saw that version.
	get(t, b)
	wantGETs(t, &c, 3, "second Get of an unchanged, expired lease")
	// Nor is a record held by nobody cached.
	if err := b.Update(ctx, locktest.NewRecord("", 1)); err != nil {
		t.Fatal(err)
	}
	get(t, b)
	get(t, b)
	wantGETs(t, &c, 5, "Gets of a released record")
}

func TestOwnRecordAndNoCacheAlwaysRead(t *testing.T) {
	s := startGoFakeS3(t, nil)
	ctx := context.Background()
	var c testserver.RequestCounter
	b := follower(t, s, "own", &c, 0)
	if err := b.Create(ctx, locktest.NewRecord("b", 1)); err != nil {
		t.Fatal(err)
	}
	get(t, b)
	get(t, b)
	wantGETs(t, &c, 2, "Gets of the candidate's own record")

	var nc testserver.RequestCounter
	other := follower(t, s, "own", &nc, s3lock.NoCache)
	for range 3 {
		get(t, other)
	}
	wantGETs(t, &nc, 3, "Gets with NoCache")
}
