package leaderelection

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/lock"
)

func TestFollowerWaitsForLeaseThenTakesOverAtExpiry(t *testing.T) {
	el := newElection(t)
	a, b, fa := el.failingLeader(t, nil)
	// a crashes: it stops writing and never releases.
	fa.fail.Store(true)
	expiry := b.e.Status().Expiry
	el.setTime(t, expiry.Add(-time.Millisecond))
	waitFor(t, "a to step down", func() bool { return !a.e.IsLeader() })
	if b.e.IsLeader() {
		t.Fatal("b leads before the lease it observed expired")
	}
	el.setTime(t, expiry)
	waitFor(t, "b to lead at expiry", b.e.IsLeader)
	if got := b.e.Term(); got != 2 {
		t.Errorf("b's term = %d, want 2", got)
	}
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("a's Run returned %v, want ErrLeaseLost", err)
	}
}

func TestFollowerMeasuresTheLeaseFromTheWriteWhenTheLockKnowsItsAge(t *testing.T) {
	el := newElection(t)
	fa := &faultLock{Interface: el.store.Lock("a")}
	a := el.add("a", func(c *Config) { c.Lock = fa })
	waitFor(t, "a to lead", a.e.IsLeader)
	acquired := el.clk.Now()
	_, raw, err := el.store.Lock("reader").Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// a crashes before its first renewal; b reads its record only later
	// (it started late, or its view lagged), from a lock that knows when
	// the record was written.
	fa.fail.Store(true)
	el.step(t, testRetry/2)
	b := el.add("b", func(c *Config) {
		c.Lock = &faultLock{Interface: c.Lock, age: func(r []byte) (time.Duration, bool) {
			if string(r) != string(raw) {
				return 0, false
			}
			// The true time since the write: the most a correct lock may report.
			return el.clk.Since(acquired), true
		}}
	})
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	// a steps down RenewDeadline after its write began; b, which would
	// have taken over a LeaseDuration after its own read, takes over a
	// LeaseDuration after the write.
	el.takesOverAt(t, b, acquired.Add(testLease), "a lease after the write its lock dated")
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Errorf("a's Run returned %v, want ErrLeaseLost", err)
	}
}

func TestTermIncrementsOnEveryAcquisition(t *testing.T) {
	el := newElection(t)
	prev := int64(0)
	for i := 0; i < 6; i++ {
		c := el.add("c"+string(rune('0'+i)), nil)
		waitFor(t, c.id+" to lead", c.e.IsLeader)
		if term := c.e.Term(); term != prev+1 {
			t.Fatalf("%s's term = %d, want %d", c.id, term, prev+1)
		}
		prev = c.e.Term()
		c.cancel()
		if err := c.wait(t); err != nil {
			t.Fatalf("%s: %v", c.id, err)
		}
	}
	if rec := el.holder(t); rec.HolderIdentity != "" || rec.LeaderTransitions != 6 {
		t.Fatalf("after six released terms the record is %+v", rec)
	}
}

func TestPollingFollowerWithoutWatcherTakesOverAtExpiry(t *testing.T) {
	el := newElection(t)
	_, b, fa := el.failingLeader(t, func(c *Config) { c.Lock = &faultLock{Interface: el.store.Lock("b")} })
	fa.fail.Store(true)
	// b polls; its observation of the unchanged record fixes the expiry.
	expiry := b.e.Status().Expiry
	for now := el.clk.Now(); now.Before(expiry.Add(-testRetry)); now = el.clk.Now() {
		el.step(t, testRetry)
	}
	if b.e.IsLeader() {
		t.Fatal("b leads before the lease expired")
	}
	el.setTime(t, expiry.Add(time.Duration(JitterFactor*float64(testRetry))))
	waitFor(t, "b to lead", b.e.IsLeader)
}

func TestReleasedLockIsTakenByPollerWithinOnePoll(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	b := el.add("b", func(c *Config) { c.Lock = &faultLock{Interface: el.store.Lock("b")} })
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	a.cancel()
	if err := a.wait(t); err != nil {
		t.Fatal(err)
	}
	el.step(t, time.Duration((1+JitterFactor)*float64(testRetry)))
	waitFor(t, "b to lead after one poll", b.e.IsLeader)
}

func TestRestartedIdentityWaitsForItsOldLease(t *testing.T) {
	el := newElection(t)
	fa := &faultLock{Interface: el.store.Lock("a")}
	old := el.add("a", func(c *Config) { c.Lock = fa; c.ReleaseOnCancel = false })
	waitFor(t, "a to lead", old.e.IsLeader)
	fa.fail.Store(true) // the old incarnation hangs, then dies
	el.step(t, testRenew)
	waitFor(t, "old a to step down", func() bool { return !old.e.IsLeader() })
	reborn := el.add("a", nil)
	waitFor(t, "reborn a to read the record", func() bool { return reborn.e.GetLeader() == "a" })
	if reborn.e.IsLeader() {
		t.Fatal("a restarted candidate with the same identity took over a live lease")
	}
	el.setTime(t, reborn.e.Status().Expiry)
	waitFor(t, "reborn a to lead", reborn.e.IsLeader)
	if reborn.e.Term() != 2 {
		t.Fatalf("reborn term = %d, want 2 (a new term, for fencing)", reborn.e.Term())
	}
}

func TestCorruptRecordKeepsFollowerFromAcquiring(t *testing.T) {
	el := newElection(t)
	el.store.SetRaw([]byte("garbage"))
	a := el.add("a", nil)
	for i := 0; i < 5; i++ {
		el.step(t, testLease)
	}
	if a.e.IsLeader() {
		t.Fatal("a candidate took over a corrupt record")
	}
	if got := string(el.store.Raw()); got != "garbage" {
		t.Fatalf("corrupt record overwritten with %q", got)
	}
}

// releasedThenPolled releases a's lock with b having just read it, and
// returns how long after the release b leads.
func releasedThenPolled(t *testing.T, wrap func(lock.Interface) lock.Interface) time.Duration {
	t.Helper()
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	b := el.add("b", func(c *Config) { c.Lock = wrap(el.store.Lock("b")) })
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	a.cancel()
	if err := a.wait(t); err != nil {
		t.Fatal(err)
	}
	released := el.clk.Now()
	for !b.e.IsLeader() && el.clk.Since(released) <= testLease {
		el.step(t, 100*time.Millisecond)
		el.settle(t)
	}
	if !b.e.IsLeader() {
		t.Fatalf("b does not lead %v after the release", el.clk.Since(released))
	}
	return el.clk.Since(released)
}

func TestFollowerPollsEveryRetryPeriodAfterItsWatchEnds(t *testing.T) {
	took := releasedThenPolled(t, func(l lock.Interface) lock.Interface { return &faultLock{Interface: l, watch: watchEnded} })
	if limit := time.Duration((1 + JitterFactor) * float64(testRetry)); took > limit {
		t.Fatalf("a follower whose watch ended took over %v after a release; polling every RetryPeriod with jitter bounds it by %v", took, limit)
	}
}

func TestFollowerPollsEveryRetryPeriodWhileItsWatchIsDown(t *testing.T) {
	took := releasedThenPolled(t, func(l lock.Interface) lock.Interface {
		return &faultLock{Interface: l, watch: watchSilent, watchDown: true}
	})
	if limit := time.Duration((1 + JitterFactor) * float64(testRetry)); took > limit {
		t.Fatalf("a follower whose watch is down took over %v after a release; polling every RetryPeriod with jitter bounds it by %v", took, limit)
	}
}

func TestSlowAcquisitionDoesNotStartTheFunction(t *testing.T) {
	el := newElection(t)
	slow := newGate(t)
	hl := &faultLock{Interface: el.store.Lock("a")}
	hl.hangCreate.Store(slow)
	a := el.add("a", func(c *Config) { c.Lock = hl })
	waitFor(t, "a's Create to hang", func() bool { return slow.entered.Load() == 1 })
	el.clk.Step(testRenew) // a is inside the call: nothing to settle
	hl.hangCreate.Store(nil)
	slow.open()
	el.settle(t)
	if a.started.Load() != 0 || a.e.IsLeader() {
		t.Fatalf("an acquisition that took RenewDeadline started the function (started %d, leading %v)", a.started.Load(), a.e.IsLeader())
	}
	// The record it wrote is treated as any other holder's: a takes it
	// once the lease has run out, with a new term.
	el.step(t, testLease)
	waitFor(t, "a to lead", a.e.IsLeader)
	if a.e.Term() != 2 {
		t.Fatalf("term %d, want 2", a.e.Term())
	}
}

// The leader's wall clock is stepped hours back (its records look long
// expired) or forward (they look valid for hours): a follower, which
// measures the lease on its own clock from when it saw the record change,
// neither takes over while the leader renews nor waits longer than a lease
// once the renewals stop.
func TestSteppedClockOfTheHolderNeitherShortensNorLengthensTheLease(t *testing.T) {
	for _, step := range []time.Duration{-6 * time.Hour, 6 * time.Hour} {
		t.Run(step.String(), func(t *testing.T) {
			el := newElection(t)
			sa := &faultLock{Interface: el.store.Lock("a")}
			a := el.add("a", func(c *Config) { c.Lock, c.ReleaseOnCancel = sa, false })
			waitFor(t, "a to lead", a.e.IsLeader)
			b := el.add("b", nil)
			waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })

			sa.skew.Store(int64(step))
			for range 3 * testLease / testRetry {
				el.step(t, testRetry)
				if b.e.IsLeader() {
					t.Fatalf("b took over from a leader that renews, whose record says it was renewed at %v (the follower's clock: %v)", el.holder(t).RenewTime, el.clk.Now())
				}
			}
			renewed := el.clk.Now()
			if rec := el.holder(t); rec.RenewTime.Sub(renewed).Abs() < time.Hour {
				t.Fatalf("the record's RenewTime %v is not hours away from %v: the step did not reach the record", rec.RenewTime, renewed)
			}
			waitFor(t, "b to observe a's last renewal", func() bool { return b.e.Status().Expiry.Equal(renewed.Add(testLease)) })

			a.cancel() // a crashes: it leaves the lock to expire
			if err := a.wait(t); err != nil {
				t.Fatalf("a's Run = %v", err)
			}
			el.takesOverAt(t, b, renewed.Add(testLease), "a lease after a's last renewal")
		})
	}
}
