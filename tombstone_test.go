package leaderelection

import (
	"context"
	"errors"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/b3df926d/leaderelection/lock"
)

// Without a tombstone (the leader's Create fails here; a leader that is
// dead or cut off writes none either), followers treat the vanished record
// as held: a whole lease from what they observed, and from when they first
// found it gone.
func TestDeletedRecordIsHeldUntilObservedLeaseExpires(t *testing.T) {
	el := newElection(t)
	a, b, fa := el.failingLeader(t, nil)
	fa.failCreate.Store(true)
	c := el.add("c", nil)
	waitFor(t, "c to see a", func() bool { return c.e.GetLeader() == "a" })
	el.step(t, testRetry)
	renewed := el.clk.Now()
	waitFor(t, "a renewal", func() bool { return a.e.Status().LastRenew.Equal(renewed) })
	waitFor(t, "the followers to observe it", func() bool {
		return b.e.Status().Expiry.Equal(renewed.Add(testLease)) && c.e.Status().Expiry.Equal(renewed.Add(testLease))
	})

	el.store.Delete() // kubectl delete lease, rm the lock file, ...
	el.settle(t)
	if b.e.IsLeader() || c.e.IsLeader() {
		t.Fatal("a follower took over at once after the record was deleted under a live leader")
	}
	// a's next renewal finds the record gone: it steps down at once, not
	// at RenewDeadline.
	el.step(t, testRetry)
	waitFor(t, "a to step down at its next renewal", func() bool { return !a.e.IsLeader() })
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a's Run = %v, want ErrLeaseLost", err)
	}
	el.setTime(t, renewed.Add(testLease-time.Millisecond))
	if b.e.IsLeader() || c.e.IsLeader() {
		t.Fatal("a follower took over before the lease it observed expired")
	}
	// The lease also runs from the moment a follower first found the
	// record gone (at the latest a's renewal step above), whoever held it.
	// Then a follower recreates the record, and leads once it has stood
	// RenewDeadline (no leader it never saw put its term back meanwhile).
	el.setTime(t, renewed.Add(testRetry+testLease))
	waitFor(t, "a follower to recreate the record", func() bool { return el.store.Raw() != nil })
	el.settle(t)
	if b.e.IsLeader() || c.e.IsLeader() {
		t.Fatal("a follower led as soon as it recreated the record, before it had stood RenewDeadline")
	}
	el.step(t, testRenew)
	waitFor(t, "a follower to lead", func() bool { return b.e.IsLeader() || c.e.IsLeader() })
	if rec := el.holder(t); rec.LeaderTransitions != 2 {
		t.Fatalf("the recreated record has term %d, want 2 (the last observed + 1)", rec.LeaderTransitions)
	}
}

func TestLeaderStepsDownWhenItsRenewalFindsTheRecordGone(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	el.store.Delete()
	el.step(t, testRetry)
	waitFor(t, "a to step down", func() bool { return !a.e.IsLeader() })
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Run = %v, want ErrLeaseLost", err)
	}
}

// A follower that polls (git has no watch) last read term 1; c then took
// term 2 without it reading again, and the record was deleted. c's renewal
// finds the record gone: it steps down and recreates the record with its
// own term (a tombstone), so b continues from term 3. Without the
// tombstone b waited out the deletion and created "the last term it saw +
// 1", term 2 again: one fencing token held by two identities.
func TestDeletedRecordIsNotRecreatedWithATermALaggingFollowerNeverSaw(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	b := el.add("b", func(c *Config) { c.Lock = &faultLock{Interface: el.store.Lock("b")} })
	c := el.add("c", nil)
	waitFor(t, "b and c to see a", func() bool { return b.e.GetLeader() == "a" && c.e.GetLeader() == "a" })
	el.settle(t)

	// The clock stands still: b, which only polls, reads nothing until it
	// moves. a releases term 1, c (watching) takes term 2 at once, and an
	// operator deletes the record.
	a.cancel()
	if err := a.wait(t); err != nil {
		t.Fatalf("a's Run = %v", err)
	}
	waitFor(t, "c to lead", c.e.IsLeader)
	el.store.Delete()
	el.settle(t)
	if got := b.e.Status().Transitions; got != 1 {
		t.Fatalf("b has read term %d; the test needs it to have seen only term 1", got)
	}

	el.stepUntilLeads(t, b, 4*testLease, "after the deletion")
	if err := c.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("c's Run = %v, want ErrLeaseLost", err)
	}
	el.wantTerms(t, b, []int64{1, 2, 3}, []string{"a", "c", "b"}, "want 1, 2, 3 led by a, c, b: the term after the deletion must be above every term used")
}

// The tombstone is written as soon as the renewal finds the record gone,
// without waiting for a leader's function that ignores its context: it is
// a held record, so nobody takes over while the function still runs (for
// a lease), and it is released as soon as the function has returned.
func TestDeletedRecordTombstoneIsHeldUntilTheFunctionReturns(t *testing.T) {
	el := newElection(t)
	deaf := newGate(t)
	a := el.add("a", func(c *Config) { deafUntil(deaf, c) })
	defer deaf.open()
	waitFor(t, "a to lead", a.e.IsLeader)
	b := el.add("b", nil)
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })

	el.store.Delete()
	el.step(t, testRetry) // a's renewal finds the record gone
	waitFor(t, "a to step down", func() bool { return !a.e.IsLeader() })
	el.settle(t)
	if a.fnExited.Load() != 0 {
		t.Fatal("a's function returned; the test needs it to run on")
	}
	if rec := el.holder(t); rec.HolderIdentity != "a" || rec.LeaderTransitions != 1 || rec.LeaseDurationSeconds != int(testLease/time.Second) {
		t.Fatalf("record after a's renewal found it gone: %+v; want a tombstone held by a with term 1 and a full lease, written while a's function still runs", rec)
	}
	stepped := el.clk.Now()
	el.setTime(t, stepped.Add(testLease-time.Millisecond))
	el.settle(t)
	if b.e.IsLeader() {
		t.Fatal("b took over while a's function still ran, less than a lease after a stepped down")
	}

	deaf.open()
	waitFor(t, "a's Run to end", func() bool { return a.exited.Load() })
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a's Run = %v, want ErrLeaseLost", err)
	}
	// The release after the function returned wakes b (watching) at once.
	waitFor(t, "b to lead after the tombstone's release", b.e.IsLeader)
	if b.e.Term() != 2 {
		t.Fatalf("b leads term %d, want 2", b.e.Term())
	}
}

// A follower whose view lagged never saw the current holder: c took term 2
// and the record was deleted before b's next poll. b's last observed
// change (a's record) is almost a lease old, but the disappearance counts
// as a change: b waits a whole lease from its first not-found, long enough
// for any holder it missed to have stepped down (within RenewDeadline of
// its last renewal). c here is a bare writer that leaves no tombstone.
func TestDeletedRecordAfterAHiddenAcquisitionIsHeldALeaseFromItsDisappearance(t *testing.T) {
	el := newElection(t)
	ctx := context.Background()
	rec := lock.Record{HolderIdentity: "a", LeaseDurationSeconds: int(testLease / time.Second), LeaderTransitions: 1}
	if err := el.store.Lock("a").Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	bLock := &faultLock{Interface: el.store.Lock("b"), clk: el.clk}
	b := el.add("b", func(c *Config) { c.Lock = bLock })
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	el.settle(t)

	// Between two of b's polls: c takes term 2, and the record is deleted.
	w := el.store.Lock("c")
	if _, _, err := w.Get(ctx); err != nil {
		t.Fatal(err)
	}
	rec.HolderIdentity, rec.LeaderTransitions = "c", 2
	if err := w.Update(ctx, rec); err != nil {
		t.Fatal(err)
	}
	el.store.Delete()

	for bLock.firstGone.Load() == nil {
		el.step(t, testRetry/10)
	}
	gone := *bLock.firstGone.Load()
	if !gone.Before(b.e.Status().Expiry) {
		t.Fatalf("b first found the record gone at %v, after a's lease it observed (%v): the test needs it before", gone, b.e.Status().Expiry)
	}
	el.claimsAt(t, b, gone.Add(testLease), "a lease after it first found the record gone (a holder it never saw may still work)")
}

// The other way a claim meets the leader whose term it missed: the
// leader's renewal finds the record gone, and the claim lands between that
// read and the tombstone's Create. The Create loses; the record it lost to
// has a term not above the leader's, so the leader replaces it with its
// tombstone. Before, the leader left it ("another candidate already
// created one"), and the claimant would have led a term in use.
func TestTombstoneReplacesARecordWithALowerTermThatBeatItsCreate(t *testing.T) {
	el := newElection(t)
	deaf := newGate(t)
	claimant := el.store.Lock("b")
	claim := func() {
		rec := lock.Record{HolderIdentity: "b", LeaseDurationSeconds: int(testLease / time.Second), LeaderTransitions: 1}
		if err := claimant.Create(context.Background(), rec); err != nil {
			t.Errorf("b's claim: %v", err)
		}
	}
	hook := &faultLock{}
	a := el.add("a", func(c *Config) {
		deafUntil(deaf, c)
		hook.Interface = c.Lock
		c.Lock = hook
	})
	defer deaf.open()
	waitFor(t, "a to lead", a.e.IsLeader)
	hook.beforeCreate.Store(&claim)

	el.store.Delete()
	el.step(t, testRetry) // a's renewal finds the record gone
	waitFor(t, "a to step down", func() bool { return !a.e.IsLeader() })
	el.settle(t)
	if rec := el.holder(t); rec.HolderIdentity != "a" || rec.LeaderTransitions != 1 {
		t.Fatalf("record %+v after a's tombstone lost its Create to b's record with term 1; want a's term 1 in its place", rec)
	}
}

// A leader that stops gracefully just after its record was deleted and
// recreated with a lower term (here a fresh candidate's term 1, as the S3
// campaign saw: "term went from 40 (r2) to 1 (r0)", the leader stopped
// by the next fault) releases over that record, so the count goes on from
// its term. Before, it left it ("the lock has moved on"), and the count
// restarted at 1.
func TestReleaseReplacesARecordWithALowerTerm(t *testing.T) {
	el := newElection(t)
	ctx := context.Background()
	if err := el.store.Lock("x").Create(ctx, lock.Record{LeaderTransitions: 1, LeaseDurationSeconds: 1}); err != nil {
		t.Fatal(err)
	}
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	if a.e.Term() != 2 {
		t.Fatalf("a leads term %d, want 2", a.e.Term())
	}
	el.store.Delete()
	fresh := lock.Record{HolderIdentity: "b", LeaseDurationSeconds: int(testLease / time.Second), LeaderTransitions: 1}
	if err := el.store.Lock("b").Create(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	a.cancel()
	if err := a.wait(t); err != nil {
		t.Fatalf("a's Run = %v", err)
	}
	if rec := el.holder(t); rec.HolderIdentity != "" || rec.LeaderTransitions != 2 {
		t.Fatalf("record %+v after a's release; want a's term 2, released, in place of b's term 1", rec)
	}
}

// The git campaign's other case: the leader's renewals were too slow, so
// its step-down timer fired before any renewal found the record deleted,
// and it wrote no tombstone (too late: see term.tombstone). A fresh
// candidate claimed term 1 meanwhile. The leader was the one process that
// knew the count, and Run was about to return (the example then exits).
// On its way out it reads the lock, finds a claim with a term not above
// its own, and replaces it with its tombstone; the claim's confirmation
// fails and the count goes on. Before, the claim stood and c led term 1.
// claimedUnderALostLeader: a leads (on a faultLock) until its store fails, and stays deaf to cancellation (its function
// returns when deaf opens); it loses its term, the record is deleted, and
// c, a fresh candidate, claims term 1.
func (el *election) claimedUnderALostLeader(t *testing.T) (a *candidate, fa *faultLock, deaf *gate, c *candidate) {
	t.Helper()
	fa = &faultLock{Interface: el.store.Lock("a")}
	a, deaf, _ = el.deafLeader(t, fa)
	fa.fail.Store(true) // renewals (and the tombstone) fail: a slow store
	fa.failCreate.Store(true)
	for a.e.IsLeader() {
		el.step(t, testRetry/4)
	}
	el.store.Delete()
	c = el.add("c", func(c *Config) { c.Lock = &faultLock{Interface: el.store.Lock("c"), plainNotFound: true} })
	waitFor(t, "c to claim the lock", func() bool {
		rec, _, err := el.store.Lock("x").Get(context.Background())
		return err == nil && rec.HolderIdentity == "c" && lock.IsClaim(*rec)
	})
	return a, fa, deaf, c
}

func TestLeaderLeavingReplacesALowerClaimWithItsTombstone(t *testing.T) {
	el := newElection(t)
	a, fa, deaf, c := el.claimedUnderALostLeader(t)
	fa.fail.Store(false)
	fa.failCreate.Store(false)
	deaf.open() // a's function returns: Run is about to return
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a's Run = %v, want ErrLeaseLost", err)
	}
	if rec := el.holder(t); rec.HolderIdentity != "a" || rec.LeaderTransitions != 1 || lock.IsClaim(rec) {
		t.Fatalf("record %+v after a left; want a's tombstone for term 1 in place of c's claim", rec)
	}
	el.stepUntilLeads(t, c, 4*(testLease+testRenew), "after a left")
	el.wantTerms(t, c, []int64{1, 2}, []string{"a", "c"}, "want 1, 2 led by a, c (not term 1 twice)")
}

// The git campaign's term held twice (fault 257): the leaving leader's
// last look read a fresh claim for term 1, but before its tombstone
// landed, a follower that had not seen the leader's term replaced that
// claim with its own for the leader's term. The tombstone's
// compare-and-swap failed, and the follower led the leader's term again.
// The last look must read again and replace that claim too.
func TestLeaderLeavingReplacesEveryClaimNotAboveItsTermThatWinsARace(t *testing.T) {
	el := newElection(t)
	a, fa, deaf, c := el.claimedUnderALostLeader(t)
	// Just before a's last look replaces c's claim, d (which saw term 0
	// only) replaces it with its claim for term 1: a's term.
	cut := func() {
		d := el.store.Lock("d")
		if _, _, err := d.Get(context.Background()); err != nil {
			t.Error(err)
			return
		}
		claim := lock.Record{HolderIdentity: "d", LeaseDurationSeconds: int(testLease / time.Second), RenewTime: metav1.NewTime(el.clk.Now()), LeaderTransitions: 1}
		if err := d.Update(context.Background(), claim); err != nil {
			t.Error(err)
		}
	}
	fa.beforeUpdate.Store(&cut)
	fa.fail.Store(false)
	fa.failCreate.Store(false)
	deaf.open() // a's function returns: Run is about to return
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a's Run = %v, want ErrLeaseLost", err)
	}
	if fa.beforeUpdate.Load() != nil {
		t.Fatal("a's last look wrote nothing: the race was not run")
	}
	if rec := el.holder(t); rec.HolderIdentity != "a" || rec.LeaderTransitions != 1 || lock.IsClaim(rec) {
		t.Fatalf("record %+v after a left; want a's tombstone for term 1 in place of d's claim", rec)
	}
	el.stepUntilLeads(t, c, 4*(testLease+testRenew), "after a left")
	el.wantTerms(t, c, []int64{1, 2}, []string{"a", "c"}, "want 1, 2 led by a, c (not term 1 twice)")
}

// deafLeader starts a on l, its function deaf to cancellation until deaf
// opens, and waits for it to lead; good is when its acquisition started
// (its last good renewal so far).
func (el *election) deafLeader(t *testing.T, l lock.Interface) (a *candidate, deaf *gate, good time.Time) {
	t.Helper()
	deaf = newGate(t)
	a = el.add("a", func(c *Config) { c.Lock = l; deafUntil(deaf, c) })
	waitFor(t, "a to lead", a.e.IsLeader)
	el.settle(t)
	return a, deaf, a.e.Status().LastRenew
}

// The git campaign's term 541 held twice: the leader's renewal found the
// record gone with 40 ms of its renewal deadline left, its tombstone's
// Create was cancelled at that deadline, it exited, and its restart (a
// fresh candidate) claimed term 1, which a follower that knew only the
// term before replaced with its claim for the leader's term, and led it.
// The tombstone has until LeaseDuration after the last good renewal: no
// candidate that knew the term can have led the next one before that.
// Here the Create lands after the renewal deadline, and a fresh candidate
// continues from term 2. Before, the record stayed gone and it led term 1
// again.
func TestTombstoneMayLandAfterTheRenewalDeadline(t *testing.T) {
	el := newElection(t)
	fl := &faultLock{Interface: el.store.Lock("a")} // the renewal answers, late
	a, deaf, good := el.deafLeader(t, fl)

	renewal, create := newGate(t), newGate(t)
	fl.hangUpdate.Store(renewal)
	el.step(t, testRetry)
	waitFor(t, "a's renewal to hang", func() bool { return renewal.entered.Load() == 1 })
	el.clk.SetTime(good.Add(testRenew - time.Millisecond)) // a is inside the call: nothing to settle
	el.store.Delete()
	created := fl.creates.Load()
	fl.lateCreate.Store(create)
	renewal.open() // the renewal finds the record gone, 1ms before the deadline
	waitFor(t, "a's tombstone Create to hang", func() bool { return create.entered.Load() == 1 })
	el.clk.SetTime(good.Add(testRenew + time.Millisecond))
	create.open()
	waitFor(t, "a's tombstone Create to return", func() bool { return fl.creates.Load() == created+1 })
	if rec, _, err := el.store.Lock("x").Get(context.Background()); err != nil || rec.HolderIdentity != "a" || rec.LeaderTransitions != 1 {
		t.Fatalf("record %+v (%v) after a's tombstone landed after its renewal deadline; want a's term 1", rec, err)
	}

	deaf.open()
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a's Run = %v, want ErrLeaseLost", err)
	}
	r := el.add("a-restarted", func(c *Config) { c.Lock = &faultLock{Interface: el.store.Lock("a-restarted"), plainNotFound: true} })
	el.stepUntilLeads(t, r, 4*(testLease+testRenew), "after a left")
	el.wantTerms(t, r, []int64{1, 2}, []string{"a", "a-restarted"}, "want 1, 2 (not term 1 twice)")
}

// A leader whose renewals were too slow steps down at its deadline
// without finding the record gone; an operator deletes it. When Run is
// about to return (the example then exits), its last look finds no
// record and creates its tombstone, if it is still within LeaseDuration
// of its last good renewal; a fresh candidate then continues the count.
// Later, it must not: a candidate that knew the term may have led the
// next one and lost it to another deletion meanwhile.
func TestLeaderLeavingRecreatesTheDeletedRecordOnlyInTime(t *testing.T) {
	for _, tc := range []struct {
		name  string
		after time.Duration // from the last good renewal to the function's return
		want  []int64
	}{
		{"within LeaseDuration", testRenew + testRetry/2, []int64{1, 2}},
		{"after LeaseDuration", testLease + testRetry/4, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			el := newElection(t)
			fa := &faultLock{Interface: el.store.Lock("a")}
			a, deaf, good := el.deafLeader(t, fa)
			fa.fail.Store(true) // a slow store: renewals fail
			for a.e.IsLeader() {
				el.step(t, testRetry/4)
			}
			el.store.Delete()
			fa.fail.Store(false)
			el.setTime(t, good.Add(tc.after))
			deaf.open() // the function returns: Run is about to return
			if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
				t.Fatalf("a's Run = %v, want ErrLeaseLost", err)
			}
			rec, _, err := el.store.Lock("x").Get(context.Background())
			if tc.want == nil {
				if !lock.IsNotFound(err) {
					t.Fatalf("a left %v after its last good renewal and wrote %+v (%v); want no record (too late for a tombstone)", tc.after, rec, err)
				}
				return
			}
			if err != nil || rec.HolderIdentity != "a" || rec.LeaderTransitions != 1 {
				t.Fatalf("record %+v (%v) after a left; want a's tombstone for term 1", rec, err)
			}
			r := el.add("a-restarted", func(c *Config) { c.Lock = &faultLock{Interface: el.store.Lock("a-restarted"), plainNotFound: true} })
			el.stepUntilLeads(t, r, 4*(testLease+testRenew), "after a left")
			el.wantTerms(t, r, tc.want, []string{"a", "a-restarted"}, "want 1, 2 (not term 1 twice)")
		})
	}
}
