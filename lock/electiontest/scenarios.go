package electiontest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	k8sle "k8s.io/client-go/tools/leaderelection"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// deletedRecordUnderLeader: an operator deletes the record under a leader
// with two followers that have read it. The followers must treat the
// vanished record as held until the lease they saw has run out and then
// create it with the next term; the leader must stop at its next renewal.
// Before that, a follower created the record at term 1 at once, while the
// old leader kept working.
func deletedRecordUnderLeader(t *testing.T, h Harness, d locktest.Deleter, o Options) {
	el := newElection(t, h, o, nil)
	for _, id := range []string{"a", "b", "c"} {
		el.Start(id)
	}
	// A leader that both followers have seen, still leading when the
	// record goes (on a loaded machine a slow store can end a term early).
	var n int
	var old Term
	for attempt := 0; ; attempt++ {
		ts := el.leaderAfter(n, "a leader")
		n, old = len(ts), ts[len(ts)-1]
		if el.waitObserved(n - 1) {
			break
		}
		if attempt == 3 {
			t.Fatalf("no term lasted long enough for the followers to see it: %+v", el.Tracker.Terms())
		}
	}

	deletedAt := time.Now()
	d.Delete(t, el.name)
	ts := el.leaderAfter(n, "a new leader after the record was deleted")
	old, next := ts[n-1], ts[n]
	if old.End.IsZero() {
		t.Fatalf("%s still leads term %d after the record was deleted and %s started term %d", old.ID, old.Term, next.ID, next.Term)
	}
	if next.Term != old.Term+1 {
		t.Errorf("after the deletion %s led with term %d, want %d (the last observed term + 1)", next.ID, next.Term, old.Term+1)
	}
	el.Tracker.Check(t)

	// The new leader's record is in the store.
	reader := h.NewLock(t, el.name, "reader")
	ctx, cancel := context.WithTimeout(context.Background(), o.Wait)
	defer cancel()
	rec, _, err := reader.Get(ctx)
	if err != nil {
		t.Fatalf("Get after the new leader took over: %v", err)
	}
	if int64(rec.LeaderTransitions) < next.Term {
		t.Errorf("stored record %+v has a term below the new leader's %d", rec, next.Term)
	}
	t.Logf("record deleted under %s (term %d); it stopped %v later; %s led term %d %v after the deletion",
		old.ID, old.Term, old.End.Sub(deletedAt).Round(time.Millisecond), next.ID, next.Term, next.Start.Sub(deletedAt).Round(time.Millisecond))
}

// termLimitMovesLeadership: with TermLimit, the leader hands over and the
// lock goes to another candidate, not back to the one that released it.
func termLimitMovesLeadership(t *testing.T, h Harness, o Options) {
	limit := o.RetryPeriod
	el := newElection(t, h, o, func(c *leaderelection.Config) { c.TermLimit = limit })
	for _, id := range []string{"a", "b", "c"} {
		el.Start(id)
	}
	want := o.HandOvers + 1
	// Each term lasts TermLimit; a hand-over takes at most a lease (the
	// releasing leader's hold-off) and a poll.
	within := time.Duration(want)*(limit+o.LeaseDuration+2*o.RetryPeriod) + o.Wait
	ts := el.Tracker.WaitFor(t, fmt.Sprintf("%d terms", want), within, func(ts []Term) bool { return len(ts) >= want })
	ts = ts[:want]
	moved := 0
	var gaps time.Duration
	for i := 1; i < len(ts); i++ {
		if ts[i].ID != ts[i-1].ID {
			moved++
		}
		if !ts[i-1].End.IsZero() {
			gaps += ts[i].Start.Sub(ts[i-1].End)
		}
	}
	t.Logf("TermLimit %v: leadership moved to another candidate at %d of %d hand-overs; mean gap %v",
		limit, moved, o.HandOvers, (gaps / time.Duration(o.HandOvers)).Round(time.Millisecond))
	if moved*5 < o.HandOvers*4 {
		var seq []string
		for _, tm := range ts {
			seq = append(seq, fmt.Sprintf("%s:%d", tm.ID, tm.Term))
		}
		t.Errorf("leadership moved to another candidate at only %d of %d term-limit hand-overs (want at least 80%%): %v", moved, o.HandOvers, seq)
	}
	el.Tracker.Check(t)
}

// releaseThenCutOffThenTakeOver: one leads; when it releases, another
// takes over with a higher term; when that one is cut off from the store,
// it steps down (RenewDeadline) and the third takes over after the lease
// (LeaseDuration), never overlapping.
func releaseThenCutOffThenTakeOver(t *testing.T, h Harness, cut locktest.Cutter, o Options) {
	el := newElection(t, h, o, nil)
	for _, id := range []string{"a", "b", "c"} {
		el.Start(id)
	}
	ts := el.leaderAfter(0, "a first leader")
	first := ts[0]

	// Graceful hand-over: the leader releases; a follower takes over
	// without waiting for the lease.
	releasedAt := time.Now()
	if err := el.ByID(first.ID).Stop(t); err != nil {
		t.Fatalf("%s: Run after cancel: %v", first.ID, err)
	}
	ts = el.leaderAfter(1, "a leader after the release")
	second := ts[len(ts)-1]
	if second.ID == first.ID || second.Term != first.Term+1 {
		t.Fatalf("after %s released term %d, %s led term %d; want another candidate with term %d", first.ID, first.Term, second.ID, second.Term, first.Term+1)
	}
	released := second.Start.Sub(releasedAt)
	if released >= o.LeaseDuration {
		t.Errorf("%s took over %v after %s released: no sooner than the %v lease would have run out, so the release went unseen", second.ID, released, first.ID, o.LeaseDuration)
	}

	// Partition: the second leader cannot reach the store.
	c2 := el.ByID(second.ID)
	resume := cut.CutOff(t, c2.Lock)
	defer resume()
	// The last renewal it made, read by a lock that still reaches the store.
	ctx, cancel := context.WithTimeout(context.Background(), o.Wait)
	defer cancel()
	rec, _, err := h.NewLock(t, el.name, "reader").Get(ctx)
	if err != nil {
		t.Fatalf("reading the cut-off leader's last renewal: %v", err)
	}
	if rec.HolderIdentity != second.ID {
		t.Fatalf("record %+v, want holder %s", rec, second.ID)
	}
	lastRenew := rec.RenewTime.Time // whole seconds, truncated: earlier than the renewal
	if err := c2.Wait(t, o.Wait); !errors.Is(err, leaderelection.ErrLeaseLost) {
		t.Errorf("cut-off leader %s: Run returned %v, want ErrLeaseLost", second.ID, err)
	}
	ts = el.leaderAfter(2, "a leader after the cut-off")
	third := ts[len(ts)-1]
	// The next term, or a later one by the same candidate: an acquisition
	// whose write landed but whose answer timed out (a slow store) leaves
	// a term under the candidate's own identity that it never led, and it
	// takes the next one once that lease has run out.
	if len(ts) != 3 || third.ID == first.ID || third.ID == second.ID || third.Term <= second.Term {
		t.Fatalf("after %s was cut off in term %d, %s led term %d (terms %+v); want the third candidate with a term above %d, and nobody in between", second.ID, second.Term, third.ID, third.Term, ts, second.Term)
	}
	if third.Term != second.Term+1 {
		t.Logf("%s led term %d, not %d: an acquisition of its timed out after its write landed", third.ID, third.Term, second.Term+1)
	}
	if ts[1].End.IsZero() || third.Start.Before(ts[1].End) {
		t.Errorf("%s started at %v, before the cut-off %s stopped at %v", third.ID, third.Start, second.ID, ts[1].End)
	}
	if expiry := lastRenew.Add(o.LeaseDuration); third.Start.Before(expiry) {
		t.Errorf("%s took over at %v, before the lease %s renewed at %v expired at %v", third.ID, third.Start, second.ID, lastRenew, expiry)
	}
	el.Tracker.Check(t)
	t.Logf("release: %s took over %v after %s released; cut-off: %s stopped %v and %s started %v after the last renewal (lease %v)",
		second.ID, released.Round(time.Millisecond), first.ID, second.ID, ts[1].End.Sub(lastRenew).Round(time.Millisecond),
		third.ID, third.Start.Sub(lastRenew).Round(time.Millisecond), o.LeaseDuration)
}

// deletedRecordWithALaggingFollower: c polls (it cannot watch, as on git)
// and misses a hand-over: its last read shows the first leader's term n,
// the second leader takes n+1, and an operator deletes the record under
// it. The second leader's renewal finds the record gone: it steps down and
// leaves its term in the store, so c continues from n+2. Before that, c
// waited out the deletion and created n+1 again: one fencing token held by
// two identities, which a sink refusing only lower terms cannot tell apart.
func deletedRecordWithALaggingFollower(t *testing.T, h Harness, d locktest.Deleter, o Options) {
	el := newElection(t, h, o, nil)
	el.Start("a")
	el.Start("b")
	first := el.leaderAfter(0, "a first leader")[0]
	lagging := cJoins(t, el, first)

	// From here c reads nothing: it misses the hand-over.
	lagging.stalled.Store(true)
	second := releaseBesideC(t, el, first)
	deletedAt := time.Now()
	d.Delete(t, el.name)
	lagging.stalled.Store(false)
	cLedAbove(t, el, first, second, "the record was deleted", deletedAt)
}

// deletedRecordRecreatedByAFollowerThatMissedATerm: the failure the S3
// fault campaign found ("term went from 41 (r1) to 40 (r0) after
// delete-record"). c reads rarely (it polls, or reads through a cache),
// and each of its reads falls while the record is gone: the record is
// deleted under the first leader, put back, released and taken by a
// second leader between two of c's reads. c, which last read the first
// term n, finds the record gone, waits a lease, and when an operator
// deletes the second leader's record too, creates it with n+1, the second
// leader's term, before that leader's next renewal. Before, c led at once:
// two leaders, one fencing token. Now c's record is only a claim until it
// has stood RenewDeadline; the second leader's renewal, which comes first,
// replaces it with its own term, and c leads later with a higher one.
//
// The test makes c's reads "fall while the record is gone" by having its
// lock report no record (and fail its writes) while blind is set, and the
// race with the second leader's renewal deterministic by holding that
// renewal until c has recreated the record (well within the leader's
// renewal deadline, which the test lengthens for that).
func deletedRecordRecreatedByAFollowerThatMissedATerm(t *testing.T, h Harness, d locktest.Deleter, o Options) {
	// c reads again at most 2.2 RetryPeriods (jitter) after its last
	// blind write; the second leader's last good renewal started up to a
	// RetryPeriod before its renewals are held. Three RetryPeriods more of
	// RenewDeadline leave c time to recreate the record before that
	// leader steps down (and LeaseDuration keeps its margin).
	o.LeaseDuration, o.RenewDeadline = o.LeaseDuration+3*o.RetryPeriod, o.RenewDeadline+3*o.RetryPeriod
	// A record recreated after the deletion is claimed and led only once
	// the claim has stood RenewDeadline + max(LeaseDuration, 2.2 ×
	// RetryPeriod) (and a few reads): on top of Wait.
	o.Wait += o.RenewDeadline + max(o.LeaseDuration, o.RetryPeriod*22/10)
	el := newElection(t, h, o, nil)
	gated := map[string]*faultLock{}
	for _, id := range []string{"a", "b"} {
		gated[id] = el.startFaulty(id)
	}
	first := el.leaderAfter(0, "a first leader")[0]
	c := cJoins(t, el, first)

	// From here c's reads find no record.
	c.blind.Store(true)
	poll.Until(t, "c to find the record gone", o.Wait, func() bool { return c.blindReads.Load() > 0 })
	second := releaseBesideC(t, el, first)
	// c's wait from its first not-found is over once it tries to write.
	poll.Until(t, "c to try to create the record", o.Wait+o.LeaseDuration, func() bool { return c.blindWrites.Load() > 0 })

	resume := gated[second.ID].updates.Hold()
	defer resume()
	d.Delete(t, el.name)
	c.blind.Store(false)
	poll.Until(t, "c to recreate the record", o.Wait, c.created.Load)
	recreatedAt := time.Now()
	resume()

	cLedAbove(t, el, first, second, "c recreated the record", recreatedAt)
}

// cJoins starts c, on a faultLock, once first leads, and waits until c
// has read first's term.
func cJoins(t *testing.T, el *Election, first Term) *faultLock {
	t.Helper()
	c := el.startFaulty("c")
	if !el.waitObserved(0) {
		t.Fatalf("%s's term %d ended before c read it (a slow store?)", first.ID, first.Term)
	}
	return c
}

// releaseBesideC stops first's candidate, which releases, and returns the
// next tenure: the other candidate than c, with first's term + 1.
func releaseBesideC(t *testing.T, el *Election, first Term) Term {
	t.Helper()
	if err := el.ByID(first.ID).Stop(t); err != nil {
		t.Fatalf("%s: Run after cancel: %v", first.ID, err)
	}
	second := el.leaderAfter(1, "a leader after the release")[1]
	if second.ID == "c" || second.Term != first.Term+1 {
		t.Fatalf("after %s released term %d, %s led term %d; want the other candidate than c with term %d", first.ID, first.Term, second.ID, second.Term, first.Term+1)
	}
	return second
}

// cLedAbove is the end of the scenarios in which c, a follower that last
// read first's term, comes back after the record was deleted under
// second, the leader after first (what, at: the event that must fall
// within second's term). second's Run ends with ErrLeaseLost; no term is
// held by two identities; the third tenure is c's, with a term above
// second's, the last one used before the deletion.
func cLedAbove(t *testing.T, el *Election, first, second Term, what string, at time.Time) {
	t.Helper()
	if err := el.ByID(second.ID).Wait(t, el.o.Wait); !errors.Is(err, leaderelection.ErrLeaseLost) {
		t.Errorf("%s: Run returned %v, want ErrLeaseLost (%s in its term)", second.ID, err, what)
	}
	ts := el.leaderAfter(2, "c to lead after the deletion")
	if end := ts[1].End; end.Before(at) {
		t.Fatalf("%s's term %d ended at %v, before %s at %v (a slow store?): nothing was tested", second.ID, second.Term, end, what, at)
	}
	holders := map[int64]string{}
	for _, tm := range ts {
		if id, ok := holders[tm.Term]; ok && id != tm.ID {
			t.Errorf("term %d held by %s and by %s: a sink fencing on terms cannot tell their writes apart", tm.Term, id, tm.ID)
		}
		holders[tm.Term] = tm.ID
	}
	third := ts[2]
	if third.ID != "c" || third.Term <= second.Term {
		t.Errorf("after the deletion %s led term %d; want c with a term above %d, the last one used", third.ID, third.Term, second.Term)
	}
	el.Tracker.Check(t)
	t.Logf("c last read term %d; %s led term %d; %s; c led term %d %v later",
		first.Term, second.ID, second.Term, what, third.Term, third.Start.Sub(at).Round(time.Millisecond))
}

// killedLeaderIsReplacedAfterLeaseExpires: a leader that dies without
// releasing (its Run cancelled, no ReleaseOnCancel) is replaced by another
// candidate with the next term, never before the lease it last renewed has
// expired.
func killedLeaderIsReplacedAfterLeaseExpires(t *testing.T, h Harness, o Options) {
	el := newElection(t, h, o, func(c *leaderelection.Config) { c.ReleaseOnCancel = false })
	for _, id := range []string{"a", "b", "c"} {
		el.Start(id)
	}
	// Made before the leader dies: a new handle may take a while to make
	// (a gossip node joins its cluster).
	reader := h.NewLock(t, el.name, "reader")
	first := el.leaderAfter(0, "a leader")[0]
	if err := el.ByID(first.ID).Stop(t); err != nil {
		t.Fatalf("%s: Run returned %v after its context ended", first.ID, err)
	}
	// The dead leader's last renewal, as written (its clock is ours).
	ctx, cancel := context.WithTimeout(context.Background(), o.Wait)
	defer cancel()
	rec, _, err := reader.Get(ctx)
	if err != nil {
		t.Fatalf("reading the dead leader's last renewal: %v", err)
	}
	if rec.HolderIdentity != first.ID || int64(rec.LeaderTransitions) != first.Term {
		t.Fatalf("read %+v after %s died in term %d: another candidate took over before the read (a slow store?), nothing is tested", rec, first.ID, first.Term)
	}
	lastRenew := rec.RenewTime.Time
	next := el.leaderAfter(1, "a new leader")[1]
	if next.Term != first.Term+1 {
		t.Errorf("new term %d, want %d", next.Term, first.Term+1)
	}
	if expiry := lastRenew.Add(o.LeaseDuration); next.Start.Before(expiry) {
		t.Errorf("%s took over at %v, before the lease renewed at %v expired at %v", next.ID, next.Start, lastRenew, expiry)
	}
	el.Tracker.Check(t)
}

// releaseHandsOverThroughWatch: with ReleaseOnCancel a leader writes an
// empty holder on the way out, and a watching follower takes over at
// once, three times in a row: the lease is twice the scenario's wait, so
// only the watch can have woken it.
func releaseHandsOverThroughWatch(t *testing.T, h Harness, o Options) {
	o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 2*o.Wait, 4*o.Wait/3, 2*o.RetryPeriod
	el := newElection(t, h, o, nil)
	for _, id := range []string{"a", "b", "c"} {
		if _, ok := el.Start(id).Lock.(lock.Watcher); !ok {
			t.Skip("the lock is no lock.Watcher")
		}
	}
	for round := 1; round <= 3; round++ {
		ts := el.leaderAfter(round-1, fmt.Sprintf("leader %d", round))
		cur := ts[round-1]
		if err := el.ByID(cur.ID).Stop(t); err != nil {
			t.Fatalf("%s: Run returned %v", cur.ID, err)
		}
	}
	el.Tracker.WaitFor(t, "the last candidate to lead", o.Wait, func(ts []Term) bool { return len(ts) == 3 })
	el.Tracker.Check(t)
}

// storeOutageStepsTheLeaderDown: the store stops answering every
// candidate. The leader steps down at its renew deadline, and Run returns
// ErrLeaseLost; nobody can write, so nobody leads until the store answers
// again, and then a candidate leads with a higher term.
func storeOutageStepsTheLeaderDown(t *testing.T, h Harness, b locktest.Blocker, o Options) {
	el := newElection(t, h, o, nil)
	for _, id := range []string{"a", "b", "c"} {
		el.Start(id)
	}
	first := el.leaderAfter(0, "a leader")[0]
	unblock := b.Block(t, el.name)
	defer unblock()
	if err := el.ByID(first.ID).Wait(t, o.Wait); !errors.Is(err, leaderelection.ErrLeaseLost) {
		t.Errorf("%s, whose store stopped answering: Run returned %v, want ErrLeaseLost", first.ID, err)
	}
	unblockedAt := time.Now()
	unblock()
	next := el.leaderAfter(1, "a leader once the store answers again")[1]
	if next.Start.Before(unblockedAt) {
		t.Errorf("%s started term %d at %v, while the store did not answer (until %v)", next.ID, next.Term, next.Start, unblockedAt)
	}
	if next.Term <= first.Term {
		t.Errorf("after the outage %s led term %d, want a term above %d", next.ID, next.Term, first.Term)
	}
	el.Tracker.Check(t)
	t.Logf("%s led term %d %v after the store answered again", next.ID, next.Term, next.Start.Sub(unblockedAt).Round(time.Millisecond))
}

// clientGoElectorHandsOverToOurs: the lock is client-go's
// resourcelock.Interface, so client-go's own elector runs on it too. Two
// of its candidates lead in turn (the first releases, the second takes
// over), the second releases, and this module's elector takes the
// released record over with the next term.
func clientGoElectorHandsOverToOurs(t *testing.T, h Harness, o Options) {
	name := locktest.Name(t)
	type clientGo struct {
		id     string
		le     *k8sle.LeaderElector
		cancel context.CancelFunc
		done   chan struct{}
	}
	start := func(id string) *clientGo {
		c := &clientGo{id: id, done: make(chan struct{})}
		le, err := k8sle.NewLeaderElector(k8sle.LeaderElectionConfig{
			Lock: h.NewLock(t, name, id), LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
			ReleaseOnCancel: true,
			Callbacks: k8sle.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) { <-ctx.Done() },
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		c.le, c.cancel = le, cancel
		go func() { defer close(c.done); le.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-c.done })
		return c
	}
	stop := func(c *clientGo) {
		c.cancel()
		select {
		case <-c.done:
		case <-time.After(o.Wait):
			t.Fatalf("client-go's elector %s did not return within %v of its context ending", c.id, o.Wait)
		}
	}
	a, b := start("client-go-a"), start("client-go-b")
	poll.Until(t, "one of client-go's candidates to lead", o.Wait, func() bool { return a.le.IsLeader() || b.le.IsLeader() })
	first, second := a, b
	if b.le.IsLeader() {
		first, second = b, a
	}
	stop(first)
	poll.Until(t, "the other client-go candidate to take over after the release", o.Wait, second.le.IsLeader)
	stop(second)

	ctx, cancel := context.WithTimeout(context.Background(), o.Wait)
	defer cancel()
	released, _, err := h.NewLock(t, name, "reader").Get(ctx)
	if err != nil || released.HolderIdentity != "" {
		t.Fatalf("after client-go's elector released: record %+v (%v), want no holder", released, err)
	}
	el := &Election{t: t, h: h, o: o, name: name, Tracker: NewTracker()}
	t.Cleanup(func() { el.Tracker.Check(t) })
	el.Start("ours")
	ours := el.leaderAfter(0, "this module's elector to take the released record over")[0]
	if want := int64(released.LeaderTransitions) + 1; ours.Term != want {
		t.Errorf("took over with term %d, want %d (the released record's + 1)", ours.Term, want)
	}
	t.Logf("client-go's %s led, then %s; ours took the released record over with term %d", first.id, second.id, ours.Term)
}
