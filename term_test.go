package leaderelection

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestLeaderRenewsEveryRetryPeriod(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	for i := 0; i < 10; i++ {
		el.step(t, testRetry)
		now := el.clk.Now()
		waitFor(t, "a renewal", func() bool { return a.e.Status().LastRenew.Equal(now) })
		if rec := el.holder(t); !rec.RenewTime.Equal(&metav1.Time{Time: now}) && rec.RenewTime.Unix() != now.Unix() {
			t.Fatalf("renewal %d stored renew time %v, want %v", i, rec.RenewTime, now)
		}
	}
	if !a.e.IsLeader() || a.e.Term() != 1 {
		t.Fatalf("after renewing: leader=%v term=%d", a.e.IsLeader(), a.e.Term())
	}
}

func TestRenewFailureStepsDownBeforeAnotherCandidateCanAcquire(t *testing.T) {
	el := newElection(t)
	a, b, fa := el.failingLeader(t, nil)

	// A few good renewals, then the store fails for a only.
	for i := 0; i < 3; i++ {
		el.step(t, testRetry)
		now := el.clk.Now()
		waitFor(t, "a renewal", func() bool { return a.e.Status().LastRenew.Equal(now) })
		waitFor(t, "b to observe the renewal", func() bool { return b.e.Status().Expiry.Equal(now.Add(testLease)) })
	}
	lastGood := a.e.Status().LastRenew
	fa.fail.Store(true)
	var steppedDownAt time.Time
	for a.e.IsLeader() {
		before := fa.attempts.Load()
		el.step(t, 100*time.Millisecond)
		if el.clk.Since(lastGood) > testRenew {
			t.Fatalf("a still leads %v after its last good renewal; RenewDeadline is %v", el.clk.Since(lastGood), testRenew)
		}
		if el.clk.Now().Sub(lastGood)%testRetry == 0 {
			waitFor(t, "a renewal attempt", func() bool { return fa.attempts.Load() > before || !a.e.IsLeader() })
		}
		steppedDownAt = el.clk.Now()
	}
	if d := steppedDownAt.Sub(lastGood); d != testRenew {
		t.Errorf("a stepped down %v after the start of its last good renewal, want exactly RenewDeadline %v", d, testRenew)
	}
	waitFor(t, "a's function to exit", func() bool { return a.fnExited.Load() == 1 })
	waitFor(t, "a's OnStoppedLeading", func() bool { return a.stopped.Load() == 1 })
	if b.e.IsLeader() {
		t.Fatal("b leads as soon as a stepped down")
	}
	el.setTime(t, b.e.Status().Expiry)
	waitFor(t, "b to lead", b.e.IsLeader)
	if margin := el.clk.Now().Sub(steppedDownAt); margin < testLease-testRenew {
		t.Errorf("b took over %v after a stepped down; the margin should be LeaseDuration-RenewDeadline = %v", margin, testLease-testRenew)
	}
}

func TestHangingStoreCallStillStepsDownOnTime(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	unblock := el.store.Block()
	defer unblock()
	start := el.clk.Now()
	el.step(t, testRetry)
	waitFor(t, "a's renewal to hang in the store", func() bool { return el.store.Blocked() == 1 })
	for el.clk.Since(start) < testRenew {
		if !a.e.IsLeader() {
			t.Fatalf("a stepped down after %v, before RenewDeadline", el.clk.Since(start))
		}
		el.clk.Step(100 * time.Millisecond) // a is inside the hanging call: nothing else to settle
	}
	waitFor(t, "a to step down while its renewal hangs", func() bool { return !a.e.IsLeader() })
	waitFor(t, "a's leader context to be cancelled", func() bool { return a.fnExited.Load() == 1 })
	// Run's last look at the lock (term.lastLook, a Get) hangs too, for
	// at most RenewDeadline on the elector's clock from when it starts.
	// Wait for that Get itself before moving the clock: the renewal that
	// hung (an Update) may still count as blocked for a moment, and a
	// clock moved before the last look set its deadline would leave it
	// hanging for good (a loaded CI run failed so).
	waitFor(t, "a's last look at the lock to hang, or Run to return", func() bool { return el.store.BlockedIn("get") > 0 || a.exited.Load() })
	for lookStart := el.clk.Now(); !a.exited.Load() && el.clk.Since(lookStart) <= testRenew; {
		el.clk.Step(testRetry / 10)
		waitFor(t, "a's last look to go on hanging, or Run to return", func() bool { return el.store.BlockedIn("get") > 0 || a.exited.Load() })
	}
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Run returned %v, want ErrLeaseLost", err)
	}
}

func TestGracefulReleaseHandsOverThroughWatcherAtOnce(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	b := el.add("b", nil)
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	before := el.clk.Now()
	a.cancel()
	if err := a.wait(t); err != nil {
		t.Fatalf("a's Run after cancel returned %v, want nil", err)
	}
	waitFor(t, "b to lead without any time passing", b.e.IsLeader)
	if a.stopped.Load() != 1 {
		t.Errorf("b leads but a's OnStoppedLeading has not run")
	}
	if !el.clk.Now().Equal(before) {
		t.Fatal("the clock moved")
	}
	if a.fnExited.Load() != 1 || a.stopped.Load() != 1 {
		t.Errorf("a: function exited %d times, OnStoppedLeading %d times; want 1 and 1", a.fnExited.Load(), a.stopped.Load())
	}
	if got := b.e.Term(); got != 2 {
		t.Errorf("b's term = %d, want 2", got)
	}
}

func TestFollowerNeverCallsOnStoppedLeading(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	b := el.add("b", nil)
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	b.cancel()
	if err := b.wait(t); err != nil {
		t.Fatal(err)
	}
	if b.stopped.Load() != 0 || b.started.Load() != 0 {
		t.Fatalf("a follower that never led: started %d, stopped %d", b.started.Load(), b.stopped.Load())
	}
}

func TestTermLimitHandsOverAndStaysCandidate(t *testing.T) {
	el := newElection(t)
	a := el.add("a", func(c *Config) { c.TermLimit = 5 * time.Second })
	waitFor(t, "a to lead", a.e.IsLeader)
	b := el.add("b", nil)
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	for el.clk.Since(a.e.Status().LastRenew) >= 0 && a.e.IsLeader() {
		el.step(t, testRetry)
		now := el.clk.Now()
		waitFor(t, "a to renew or hand over", func() bool { return a.e.Status().LastRenew.Equal(now) || !a.e.IsLeader() })
	}
	waitFor(t, "b to lead after the hand-over", b.e.IsLeader)
	// OnStoppedLeading runs before the release that let b in.
	if a.stopped.Load() != 1 {
		t.Errorf("a's OnStoppedLeading called %d times before b could lead, want 1", a.stopped.Load())
	}
	select {
	case err := <-a.done:
		t.Fatalf("a's Run returned (%v) after a term-limit hand-over; it should stay a candidate", err)
	default:
	}
	// a is still campaigning: when b releases, a leads again at once (its
	// hold-off ended when b took the lock).
	b.cancel()
	waitFor(t, "a to lead again", a.e.IsLeader)
	if a.e.Term() != 3 {
		t.Errorf("a's second term = %d, want 3", a.e.Term())
	}
}

func TestStopTimeoutLeavesLockToExpire(t *testing.T) {
	el := newElection(t)
	c := &candidate{id: "a", done: make(chan error, 1), release: make(chan struct{})}
	c.lk = el.store.Lock("a")
	c.ignore.Store(true)
	cfg := el.config(c)
	cfg.StopTimeout = testRenew
	e, err := NewElector(cfg)
	if err != nil {
		t.Fatal(err)
	}
	el.start(c, e)
	defer close(c.release)
	waitFor(t, "a to lead", e.IsLeader)
	c.cancel()
	// While the function runs on, the leader keeps renewing.
	for i := 0; i < 3; i++ {
		el.step(t, testRetry)
		now := el.clk.Now()
		waitFor(t, "renewal while stopping", func() bool { return e.Status().LastRenew.Equal(now) || !e.IsLeader() })
	}
	el.step(t, testRenew)
	err = c.wait(t)
	if !errors.Is(err, ErrStopTimeout) {
		t.Fatalf("Run returned %v, want ErrStopTimeout", err)
	}
	if rec := el.holder(t); rec.HolderIdentity != "a" {
		t.Fatalf("the lock was released (holder %q) while the function still ran", rec.HolderIdentity)
	}
}

func TestFunctionReturningEndsRunAndReleases(t *testing.T) {
	el := newElection(t)
	store := el.store
	e, err := NewElector(Config{
		Lock: store.Lock("a"), LeaseDuration: testLease, RenewDeadline: testRenew, RetryPeriod: testRetry,
		ReleaseOnCancel: true, Clock: el.clk,
		Callbacks: Callbacks{OnStartedLeading: func(context.Context) {}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Run(context.Background()); err != nil {
		t.Fatalf("Run = %v, want nil when the function returns", err)
	}
	if rec := el.holder(t); rec.HolderIdentity != "" || rec.LeaderTransitions != 1 {
		t.Fatalf("record after the function returned: %+v, want released", rec)
	}
	if e.IsLeader() {
		t.Fatal("IsLeader after Run returned")
	}
}

func TestConflictingWriterDeposesLeaderAtNextRenew(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	// Something else takes the lock (a misconfigured twin, an operator).
	intruder := el.store.Lock("intruder")
	rec, _, err := intruder.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rec.HolderIdentity = "intruder"
	rec.LeaderTransitions++
	if err := intruder.Update(context.Background(), *rec); err != nil {
		t.Fatal(err)
	}
	el.step(t, testRetry)
	waitFor(t, "a to step down", func() bool { return !a.e.IsLeader() })
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Run = %v, want ErrLeaseLost", err)
	}
}

func TestTermLimitMovesLeadershipToAnotherCandidate(t *testing.T) {
	el := newElection(t)
	polling := func(c *Config) {
		c.TermLimit = 5 * time.Second
		c.Lock = &faultLock{Interface: c.Lock, watch: watchEnded}
	}
	a := el.add("a", polling)
	waitFor(t, "a to lead", a.e.IsLeader)
	for i := 0; i < 26; i++ { // the followers poll out of phase with the leader's renewals
		el.step(t, 100*time.Millisecond)
	}
	el.add("b", polling)
	el.add("c", polling)
	const handOvers = 6
	for n := 0; n <= handOvers; {
		if el.clk.Since(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) > time.Minute {
			t.Fatalf("only %d terms in a minute", n)
		}
		el.step(t, 100*time.Millisecond)
		el.settle(t)
		el.mu.Lock()
		n = len(el.who)
		el.mu.Unlock()
	}
	el.mu.Lock()
	defer el.mu.Unlock()
	for i := 1; i < len(el.who); i++ {
		if el.who[i] == el.who[i-1] {
			t.Errorf("term %d: %s took the lock back after its own term-limit hand-over (leaders %q)", el.terms[i], el.who[i], el.who)
		}
	}
}

func TestLeaderRenewsUntilOnStoppedLeadingReturns(t *testing.T) {
	el := newElection(t)
	stopping := newGate(t)
	a := el.add("a", func(c *Config) {
		c.StopTimeout = 10 * time.Second
		c.Callbacks.OnStoppedLeading = stopping.wait
	})
	waitFor(t, "a to lead", a.e.IsLeader)
	b := el.add("b", nil)
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	a.cancel()
	waitFor(t, "a's OnStoppedLeading to run", func() bool { return stopping.entered.Load() == 1 })
	for i := 0; i < 5; i++ { // longer than the lease
		el.step(t, testRetry)
		now := el.clk.Now()
		waitFor(t, "a to renew while OnStoppedLeading runs", func() bool { return a.e.Status().LastRenew.Equal(now) })
		if b.e.IsLeader() {
			t.Fatalf("b leads while a's OnStoppedLeading still runs")
		}
	}
	stopping.open()
	if err := a.wait(t); err != nil {
		t.Fatalf("a's Run = %v", err)
	}
	waitFor(t, "b to lead once a released", b.e.IsLeader)
}

func TestSuspendedLeaderStepsDownAtWakeUpWithoutRenewing(t *testing.T) {
	el := newElection(t)
	var suspended atomic.Int64
	epoch := el.clk.Now()
	a := el.addElector("a", nil, func(e *Elector) {
		e.boot = func() (time.Duration, bool) { return el.clk.Since(epoch) + time.Duration(suspended.Load()), true }
	})
	waitFor(t, "a to lead", a.e.IsLeader)
	before := el.holder(t)
	// The host sleeps for an hour: boot time moves, the monotonic clock
	// (the fake clock here) does not.
	suspended.Store(int64(time.Hour))
	el.step(t, testRetry)
	waitFor(t, "a to step down at its first wake-up", func() bool { return !a.e.IsLeader() })
	if rec := el.holder(t); !rec.RenewTime.Equal(&before.RenewTime) {
		t.Errorf("a renewed (%v) after waking from a suspend longer than its lease", rec.RenewTime)
	}
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Run = %v, want ErrLeaseLost", err)
	}
}

func TestLostLeaseWithFunctionIgnoringContextReportsBothErrors(t *testing.T) {
	el := newElection(t)
	fa := &faultLock{Interface: el.store.Lock("a")}
	ignoring := newGate(t)
	a := el.add("a", func(c *Config) {
		c.Lock, c.Recampaign = fa, true
		deafUntil(ignoring, c)
	})
	defer ignoring.open()
	waitFor(t, "a to lead", a.e.IsLeader)
	fa.fail.Store(true)
	el.step(t, testRenew)
	waitFor(t, "a to step down", func() bool { return !a.e.IsLeader() })
	waitFor(t, "a to wait for its function", func() bool {
		cs := a.e.Status().Callbacks
		return len(cs) == 1 && cs[0].Due.Equal(el.clk.Now().Add(testLease))
	})
	el.step(t, testLease) // StopTimeout
	err := a.wait(t)
	if !errors.Is(err, ErrLeaseLost) || !errors.Is(err, ErrStopTimeout) {
		t.Fatalf("Run = %v, want both ErrLeaseLost and ErrStopTimeout (even with Recampaign)", err)
	}
	if a.fnExited.Load() != 0 {
		t.Fatal("the function returned")
	}
}

func TestRecampaignLeadsAgainAfterTheStoreReturns(t *testing.T) {
	el := newElection(t)
	fa := &faultLock{Interface: el.store.Lock("a")}
	a := el.add("a", func(c *Config) { c.Lock = fa; c.Recampaign = true })
	waitFor(t, "a to lead", a.e.IsLeader)
	fa.fail.Store(true)
	el.step(t, testRenew)
	waitFor(t, "a to step down", func() bool { return !a.e.IsLeader() })
	waitFor(t, "a's function and OnStoppedLeading", func() bool { return a.fnExited.Load() == 1 && a.stopped.Load() == 1 })
	for i := 0; i < 5; i++ {
		el.step(t, testRetry)
	}
	if a.exited.Load() {
		t.Fatalf("Run returned (%v) with Recampaign set", a.wait(t))
	}
	fa.fail.Store(false)
	for i := 0; i < 10 && !a.e.IsLeader(); i++ {
		el.step(t, testRetry)
	}
	waitFor(t, "a to lead again", func() bool { return a.e.IsLeader() && a.started.Load() == 2 })
	if a.e.Term() != 2 {
		t.Fatalf("second term %d (function started %d times), want term 2", a.e.Term(), a.started.Load())
	}
}

// The leader's wall clock steps back by one RetryPeriod before each
// renewal: each renewal would store the same RenewTime (whole seconds) as
// the one before, a record that did not change, which followers cannot
// tell from no renewal at all. Within a term RenewTime strictly increases,
// so every renewal moves the follower's expiry.
func TestLeaderClockSteppedBackStillChangesTheRecordAtEveryRenewal(t *testing.T) {
	el := newElection(t)
	sc := &steppedClock{}
	a := el.add("a", func(c *Config) { c.Clock = sc })
	waitFor(t, "a to lead", a.e.IsLeader)
	b := el.add("b", nil)
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	for range 4 {
		// Settle first: a that reads its clock while arming its renewal
		// timer as the step moves would arm it a step late.
		el.settle(t)
		sc.step.Add(-int64(testRetry))
		el.step(t, testRetry)
		renewed := el.clk.Now()
		waitFor(t, "a renewal", func() bool { return a.e.Status().LastRenew.Equal(renewed.Add(time.Duration(sc.step.Load()))) })
		waitFor(t, "b to see the renewal", func() bool { return b.e.Status().Expiry.Equal(renewed.Add(testLease)) })
	}
}
