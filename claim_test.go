package leaderelection

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/lock"
)

// claimsAt checks that c does not recreate the vanished record just
// before at (when, says why, it may), recreates it at at without leading
// yet, and leads RenewDeadline later (see Elector.confirmClaim).
func (el *election) claimsAt(t *testing.T, c *candidate, at time.Time, why string) {
	t.Helper()
	el.setTime(t, at.Add(-time.Millisecond))
	el.settle(t)
	if el.store.Raw() != nil {
		t.Fatalf("the record was recreated before %v: %s", at, why)
	}
	el.setTime(t, at)
	waitFor(t, c.id+" to recreate the record at "+why, func() bool { return el.store.Raw() != nil })
	if rec := el.holder(t); rec.HolderIdentity != c.id {
		t.Fatalf("the record was recreated by %s, want %s", rec.HolderIdentity, c.id)
	}
	el.settle(t)
	if c.e.IsLeader() {
		t.Fatalf("%s led as soon as it recreated the record, before it had stood RenewDeadline", c.id)
	}
	el.takesOverAt(t, c, at.Add(testRenew), "RenewDeadline after it recreated the record")
}

// The failure the S3 fault campaign found ("term went from 41 (r1) to 40
// (r0) after delete-record"). b reads rarely (it polls, or reads through a
// cache) and every read of its falls while the record is gone: it finds
// the record gone, then misses it being put back and taken by c (term 3),
// and after a second deletion finds it gone again, a whole lease after the
// first time. It creates "the last term it saw + 1", term 2, before c's
// next renewal could put c's term back. b must not lead on that record:
// c's renewal replaces it with c's tombstone, and b continues from term 3.
// Before, b led term 2 at once, while c still led term 3.
func TestFollowerThatMissedATermBetweenTwoDeletionsDoesNotReuseIt(t *testing.T) {
	el := newElection(t)
	ctx := context.Background()
	rec := lock.Record{HolderIdentity: "a", LeaseDurationSeconds: int(testLease / time.Second), LeaderTransitions: 1}
	if err := el.store.Lock("a").Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	signal := make(chan struct{}, 1)
	bLock := &faultLock{Interface: el.store.Lock("b"), watch: watchOn(signal)}
	b := el.add("b", func(c *Config) { c.Lock = bLock })
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	t0 := el.clk.Now()

	el.store.Delete()
	el.signal(signal) // b reads now, and finds the record gone
	waitFor(t, "b to find the record gone", func() bool { return bLock.gone.Load() > 0 })
	el.step(t, testLease-testRetry/2)

	// While b reads nothing: a's tombstone, released (as a's would be
	// once its function returned); c takes term 3 at once; an operator
	// deletes the record again.
	rec.HolderIdentity, rec.LeaseDurationSeconds, rec.LeaderTransitions = "", 1, 2
	if err := el.store.Lock("a").Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	c := el.add("c", nil)
	waitFor(t, "c to lead", c.e.IsLeader)
	if c.e.Term() != 3 {
		t.Fatalf("c leads term %d, want 3", c.e.Term())
	}
	el.store.Delete()

	// A lease after b first found the record gone, before c's renewal.
	el.setTime(t, t0.Add(testLease))
	waitFor(t, "b to recreate the record", func() bool { return el.store.Raw() != nil })
	if got := el.holder(t); got.HolderIdentity != "b" || got.LeaderTransitions != 2 {
		t.Fatalf("record %+v; the test needs b to have recreated it with term 2", got)
	}
	el.settle(t)
	if b.e.IsLeader() {
		t.Fatal("b leads term 2, which c holds")
	}
	el.step(t, testRetry/2) // c's renewal
	waitFor(t, "c to step down", func() bool { return !c.e.IsLeader() })
	if err := c.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("c's Run = %v, want ErrLeaseLost", err)
	}
	if got := el.holder(t); got.LeaderTransitions != 3 {
		t.Fatalf("after c's renewal the record is %+v, want c's term 3 back (released, as c's function returned)", got)
	}
	el.step(t, testRenew)
	waitFor(t, "b to lead", b.e.IsLeader)
	el.wantTerms(t, b, []int64{3, 4}, []string{"c", "b"}, "want 3 and 4 led by c and b")
}

// A candidate that never saw the record starts just after an operator
// deleted it under a working leader. It cannot tell that from a new lock,
// so it waits before it creates term 1; meanwhile the leader's next
// renewal finds the record gone and puts back its tombstone, which the
// candidate reads and continues from. Without the wait it created term 1
// at once, beside the leader still working in term 1.
func TestFreshCandidateDoesNotLeadBesideALeaderWhoseRecordWasJustDeleted(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	el.store.Delete()
	b := el.add("b", nil)
	el.settle(t)
	if b.e.IsLeader() {
		t.Fatal("b, which never saw the record, created it at once beside a")
	}
	el.stepUntilLeads(t, b, 4*(testLease+testRenew), "after the deletion")
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a's Run = %v, want ErrLeaseLost", err)
	}
	el.wantTerms(t, b, []int64{1, 2}, []string{"a", "b"}, "want 1, 2 led by a, b")
}

// The leader crashed and its record was then deleted, so no tombstone
// comes back. c, started after the deletion, never saw the record: it
// claims term 1 at once. b saw term 1: reading c's claim, it replaces it
// with its own for term 2, which stands as long as b would have waited
// after finding the record gone (a lease). c's confirmation fails, and b
// leads term 2. c never leads term 1 again, a token a fencing store would
// reject for as long as c led.
func TestFreshCandidateLetsAFollowerThatSawTheRecordContinueTheTerms(t *testing.T) {
	el := newElection(t)
	a, b, fa := el.failingLeader(t, nil)
	fa.fail.Store(true) // a crashes: no renewal, no tombstone, no release
	fa.failCreate.Store(true)
	el.store.Delete()
	gone := el.clk.Now()
	c := el.add("c", func(c *Config) { c.Lock = &faultLock{Interface: el.store.Lock("c"), plainNotFound: true} })
	waitFor(t, "b to replace c's claim", func() bool {
		rec, _, err := el.store.Lock("x").Get(context.Background())
		return err == nil && rec.HolderIdentity == "b"
	})
	if rec := el.holder(t); rec.LeaderTransitions != 2 || !lock.IsClaim(rec) {
		t.Fatalf("record %+v; want b's claim for term 2", rec)
	}
	el.takesOverAt(t, b, gone.Add(testLease), "a lease after it found c's claim in place of a's record")
	for el.clk.Since(gone) < 2*(testLease+testRenew) {
		el.step(t, testRetry/4)
	}
	if c.e.IsLeader() || c.e.GetLeader() != "b" {
		t.Fatalf("c leads: %v, sees %q; want b's record followed", c.e.IsLeader(), c.e.GetLeader())
	}
	el.wantTerms(t, b, []int64{1, 2}, []string{"a", "b"}, "want 1, 2 led by a, b")
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a's Run = %v, want ErrLeaseLost", err)
	}
}

// The git campaign's case: b knew term 5 but polls, and its reads failed
// (or were slow) around an operator's deletion; c, restarted meanwhile,
// never saw the record. b's first read after the deletion comes
// RenewDeadline after c's first: too late to end its own wait (a lease
// from then) before c's (LeaseDuration + RenewDeadline). Before, c created
// term 1 then and led it: the count restarted beside a candidate that knew
// it. Now c's claim is in the store from the start and stands that long;
// b reads it, replaces it with term 6, and leads that.
func TestFreshClaimIsReplacedByAPollingFollowerThatKnewTheTerm(t *testing.T) {
	el := newElection(t)
	ctx := context.Background()
	x := lock.Record{HolderIdentity: "x", LeaseDurationSeconds: int(testLease / time.Second), LeaderTransitions: 5}
	if err := el.store.Lock("x").Create(ctx, x); err != nil {
		t.Fatal(err)
	}
	signal := make(chan struct{}, 1)
	fb := &faultLock{Interface: el.store.Lock("b"), watch: watchOn(signal)}
	b := el.add("b", func(c *Config) { c.Lock = fb })
	waitFor(t, "b to see x", func() bool { return b.e.GetLeader() == "x" })
	fb.fail.Store(true)

	el.store.Delete()
	gone := el.clk.Now()
	c := el.add("c", func(c *Config) { c.Lock = &faultLock{Interface: el.store.Lock("c"), plainNotFound: true} })
	el.setTime(t, gone.Add(testRenew+testRetry/4))
	fb.fail.Store(false)
	el.signal(signal)
	el.stepUntilLeads(t, b, 3*(testLease+testRenew), "after the deletion")
	if c.e.IsLeader() {
		t.Fatal("c leads beside b")
	}
	el.wantTerms(t, b, []int64{6}, []string{"b"}, "want only term 6, led by b (c's claim for term 1 replaced)")
}

// A record recreated after a deletion by a candidate that never saw the
// old one restarts the count (possible when the store was slower than
// every candidate that saw it: docs/elector.md, "A deleted record"). b saw
// term 5; after the deletion c created term 1 and crashed. b takes over
// with term 6, above every term a fencing store may have accepted, not 2,
// which the store would refuse for as long as b led.
func TestTermContinuesAboveTheHighestSeenAfterARestartedCount(t *testing.T) {
	el := newElection(t)
	ctx := context.Background()
	rec := lock.Record{HolderIdentity: "x", LeaseDurationSeconds: int(testLease / time.Second), LeaderTransitions: 5}
	if err := el.store.Lock("x").Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	b := el.add("b", nil)
	waitFor(t, "b to see x", func() bool { return b.e.GetLeader() == "x" })
	el.store.Delete()
	rec.HolderIdentity, rec.LeaderTransitions = "c", 1
	if err := el.store.Lock("c").Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "b to see c", func() bool { return b.e.GetLeader() == "c" })
	el.stepUntilLeads(t, b, 4*testLease, "after c stopped renewing")
	if got := b.e.Term(); got != 6 {
		t.Fatalf("b leads term %d, want 6 (above the term 5 it saw before the count restarted)", got)
	}
}

// A store that cannot prove it never held a record (every real backend)
// gets its first leader RenewDeadline + LeaseDuration after the first
// candidate found none: its claim stands that long (Elector.freshClaim),
// the price of never leading beside a leader whose record was just deleted
// nor restarting the count beside a candidate that knew it. An in-memory
// store proves it, and leads at once (every other test here).
func TestFirstLeaderOfANewLockWaitsUnlessTheStoreProvesItIsNew(t *testing.T) {
	el := newElection(t)
	start := el.clk.Now()
	b := el.add("b", func(c *Config) { c.Lock = &faultLock{Interface: el.store.Lock("b"), plainNotFound: true} })
	waitFor(t, "b to claim the lock", func() bool { return el.store.Raw() != nil })
	if rec := el.holder(t); !lock.IsClaim(rec) || rec.LeaderTransitions != 1 {
		t.Fatalf("record %+v; want b's claim for term 1", rec)
	}
	el.takesOverAt(t, b, start.Add(testLease+testRenew), "LeaseDuration + RenewDeadline after its first not-found")
	if b.e.Term() != 1 {
		t.Fatalf("b leads term %d, want 1", b.e.Term())
	}
	if rec := el.holder(t); lock.IsClaim(rec) || rec.LeaseDurationSeconds != int(testLease/time.Second) {
		t.Fatalf("record %+v once b leads; want a lease (AcquireTime set, LeaseDurationSeconds %d)", rec, int(testLease/time.Second))
	}
}

// On a slow store the candidates that knew a deleted record read a fresh
// candidate's claim late by a few reads' time; that claim stands that much
// longer (three times its writer's slowest read), so that they still read
// it before it is confirmed.
func TestFreshClaimStandsLongerOnASlowStore(t *testing.T) {
	el := newElection(t)
	sl := &faultLock{Interface: el.store.Lock("b"), plainNotFound: true, clk: el.clk, readTakes: testRetry}
	b := el.add("b", func(c *Config) { c.Lock = sl })
	el.stepUntilLeads(t, b, 4*(testLease+testRenew+3*testRetry), "")
	created := sl.created.Load()
	if want := created.Add(testLease + testRenew + 3*testRetry); b.e.Status().LastRenew.Before(want) {
		t.Fatalf("b led at %v, %v after it created its claim; want no earlier than %v (LeaseDuration + RenewDeadline + 3 reads of %v)", b.e.Status().LastRenew, b.e.Status().LastRenew.Sub(*created), want, testRetry)
	}
}
