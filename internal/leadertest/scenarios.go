package leadertest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// Harness is what the elector scenarios need from one backend on its real
// server.
type Harness interface {
	// NewLock returns a lock on the record called name for candidate id,
	// with client state of its own, as a separate process would have.
	NewLock(t *testing.T, name, id string) lock.Interface
	// Delete removes the record called name from the store the way an
	// operator would: kubectl delete lease, rm of the file, deleting the
	// S3 object, deleting the git branch on the server.
	Delete(t *testing.T, name string)
}

// Cutter is implemented by harnesses that can cut one candidate off from
// the store (each lock reaching the server through a proxy of its own).
type Cutter interface {
	// CutOff makes every call of l, a lock NewLock returned, hang until
	// resume is called, as a network partition would.
	CutOff(t *testing.T, l lock.Interface) (resume func())
}

// Options tune the scenarios for a backend. The zero value is ready.
type Options struct {
	// LeaseDuration, RenewDeadline and RetryPeriod of every candidate
	// (default 3s, 2s, 1s: the fastest the elector allows, with a 1s
	// safety margin).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Wait bounds each wait for a leader (default 30s).
	Wait time.Duration
	// HandOvers is how many term-limit hand-overs TermLimitMovesLeadership
	// watches (default 10).
	HandOvers int
	// Only, if set, names the scenarios to run (default: all).
	Only []string
}

func (o Options) withDefaults() Options {
	if o.LeaseDuration <= 0 {
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 3*time.Second, 2*time.Second, time.Second
	}
	if o.Wait <= 0 {
		o.Wait = 30 * time.Second
	}
	if o.HandOvers <= 0 {
		o.HandOvers = 10
	}
	return o
}

// RunScenarios runs the elector scenarios every backend must pass against
// its real server, with three candidates on one record each:
//
//   - DeletedRecordUnderLeader: the record is deleted under a leader with
//     two followers. Nobody starts before the old leader has stopped, the
//     next term is the last one + 1, and a new leader comes.
//   - DeletedRecordWithALaggingFollower: a follower that polls misses a
//     hand-over (it last read the term before), then the record is deleted
//     under the new leader. The term after the deletion is above every
//     term used: no term is held by two identities.
//   - DeletedRecordRecreatedByAFollowerThatMissedATerm: every read of a
//     follower falls while the record is gone, across a hand-over: it
//     misses a term, and after a second deletion recreates the record
//     with "the last term it saw + 1" before the current leader's next
//     renewal. That leader replaces the record with its own term, and the
//     follower leads only later, with a higher term: never two leaders, no
//     term held twice.
//   - TermLimitMovesLeadership: with TermLimit, leadership moves to another
//     candidate at nearly every hand-over (at least 80%).
//   - ReleaseThenCutOffThenTakeOver (Cutter only): a graceful release hands
//     over to another candidate before the released lease would have run
//     out; a leader cut off from the store steps down, Run returns
//     ErrLeaseLost, and the third candidate takes over only after the lease
//     the cut-off leader last renewed has expired.
//
// Every scenario checks with a Tracker that two candidates never lead at
// once and that terms strictly increase.
func RunScenarios(t *testing.T, h Harness, opts Options) {
	t.Helper()
	o := opts.withDefaults()
	run := func(name string, f func(t *testing.T)) {
		if len(o.Only) == 0 || slices.Contains(o.Only, name) {
			t.Run(name, f)
		}
	}
	run("DeletedRecordUnderLeader", func(t *testing.T) { deletedRecordUnderLeader(t, h, o) })
	run("DeletedRecordWithALaggingFollower", func(t *testing.T) { deletedRecordWithALaggingFollower(t, h, o) })
	run("DeletedRecordRecreatedByAFollowerThatMissedATerm", func(t *testing.T) { deletedRecordRecreatedByAFollowerThatMissedATerm(t, h, o) })
	run("TermLimitMovesLeadership", func(t *testing.T) { termLimitMovesLeadership(t, h, o) })
	run("ReleaseThenCutOffThenTakeOver", func(t *testing.T) {
		c, ok := h.(Cutter)
		if !ok {
			t.Skip("harness cannot cut a candidate off from the store")
		}
		releaseThenCutOffThenTakeOver(t, h, c, o)
	})
}

// Candidate is one elector of a scenario, on a lock of its own.
type Candidate struct {
	ID      string
	Lock    lock.Interface
	Elector *leaderelection.Elector
	cancel  context.CancelFunc
	done    chan error
	result  error
	ended   bool
}

// Election is a set of candidates on one record whose leader functions
// report to a Tracker.
type Election struct {
	t       *testing.T
	h       Harness
	o       Options
	name    string
	Tracker *Tracker
	cands   []*Candidate
	cfg     func(*leaderelection.Config)
}

// newElection returns an election on a fresh record. configure, if set,
// adjusts every candidate's configuration.
func newElection(t *testing.T, h Harness, o Options, configure func(*leaderelection.Config)) *Election {
	el := &Election{t: t, h: h, o: o, name: locktest.Name(t), Tracker: New(), cfg: configure}
	// Registered first, so that it runs after every candidate has stopped.
	t.Cleanup(func() { el.Tracker.Check(t) })
	el.seedReleased()
	return el
}

// seedReleased creates the record as a graceful stop leaves it (no holder,
// term 0), so that the first candidate takes it at once. On a store that
// cannot prove a lock new, a candidate that finds no record leads only once
// its claim has stood RenewDeadline + max(LeaseDuration, 2.2 ×
// RetryPeriod) plus three of its reads (it may have just been deleted
// under a leader): at git's timings under load that came close to the
// scenarios' Wait, and none of them is about a first start.
func (el *Election) seedReleased() {
	el.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), el.o.Wait)
	defer cancel()
	now := metav1.Now()
	rec := lock.Record{LeaseDurationSeconds: 1, AcquireTime: now, RenewTime: now}
	if err := el.h.NewLock(el.t, el.name, "seed").Create(ctx, rec); err != nil {
		el.t.Fatalf("creating a released record: %v", err)
	}
}

// Start runs a candidate called id until the test ends or it is stopped.
// Its leader function records its term in the tracker and works until its
// context ends.
func (el *Election) Start(id string) *Candidate {
	el.t.Helper()
	return el.start(id, nil)
}

// start is Start with the candidate's lock wrapped by wrap, if set.
func (el *Election) start(id string, wrap func(lock.Interface) lock.Interface) *Candidate {
	t := el.t
	t.Helper()
	c := &Candidate{ID: id, Lock: el.h.NewLock(t, el.name, id), done: make(chan error, 1)}
	if wrap != nil {
		c.Lock = wrap(c.Lock)
	}
	// The elector's log goes to the test's, shown when it fails.
	log := testr.NewWithOptions(t, testr.Options{LogTimestamp: true})
	cfg := leaderelection.Config{
		Lock:          c.Lock,
		LeaseDuration: el.o.LeaseDuration, RenewDeadline: el.o.RenewDeadline, RetryPeriod: el.o.RetryPeriod,
		ReleaseOnCancel: true,
		Logger:          &log,
		Callbacks: leaderelection.Callbacks{OnStartedLeading: func(ctx context.Context) {
			n, _ := leaderelection.TermFrom(ctx)
			i := el.Tracker.Begin(id, n)
			<-ctx.Done()
			el.Tracker.End(i)
		}},
	}
	if el.cfg != nil {
		el.cfg(&cfg)
	}
	e, err := leaderelection.NewElector(cfg)
	if err != nil {
		t.Fatalf("NewElector(%s): %v", id, err)
	}
	c.Elector = e
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() { c.done <- e.Run(ctx) }()
	t.Cleanup(func() { c.Stop(t) })
	el.cands = append(el.cands, c)
	return c
}

// Stop cancels the candidate's Run and returns its result.
func (c *Candidate) Stop(t *testing.T) error {
	t.Helper()
	c.cancel()
	return c.Wait(t, time.Minute)
}

// Wait waits up to within for Run to return, and returns its result.
func (c *Candidate) Wait(t *testing.T, within time.Duration) error {
	t.Helper()
	if c.ended {
		return c.result
	}
	select {
	case c.result = <-c.done:
		c.ended = true
		return c.result
	case <-time.After(within):
		t.Fatalf("%s: Run did not return within %v", c.ID, within)
		return nil
	}
}

// byID returns the candidate called id.
func (el *Election) byID(id string) *Candidate {
	for _, c := range el.cands {
		if c.ID == id {
			return c
		}
	}
	el.t.Fatalf("no candidate %q", id)
	return nil
}

// leaderAfter waits until a term after the first n has begun and is still
// open, and returns all terms.
func (el *Election) leaderAfter(n int, what string) []Term {
	el.t.Helper()
	return el.Tracker.WaitFor(el.t, what, el.o.Wait, func(ts []Term) bool {
		return len(ts) > n && ts[len(ts)-1].End.IsZero()
	})
}

// waitObserved waits until every candidate but the leader of term index
// reports it as the leader: each has read the record, so each knows the
// term and the lease it must respect. It returns false if that term ended
// first.
func (el *Election) waitObserved(index int) bool {
	el.t.Helper()
	deadline := time.Now().Add(el.o.Wait)
	for _, c := range el.cands {
		for {
			tm := el.Tracker.Terms()[index]
			if !tm.End.IsZero() {
				return false
			}
			if c.ID == tm.ID || c.Elector.GetLeader() == tm.ID {
				break
			}
			if time.Now().After(deadline) {
				el.t.Fatalf("%s has not observed %s leading within %v", c.ID, tm.ID, el.o.Wait)
			}
			time.Sleep(10 * time.Millisecond) // polling the elector's state, not synchronising with it
		}
	}
	return true
}

// deletedRecordUnderLeader: an operator deletes the record under a leader
// with two followers that have read it. The followers must treat the
// vanished record as held until the lease they saw has run out and then
// create it with the next term; the leader must stop at its next renewal.
// Before that, a follower created the record at term 1 at once, while the
// old leader kept working.
func deletedRecordUnderLeader(t *testing.T, h Harness, o Options) {
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
	h.Delete(t, el.name)
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
func releaseThenCutOffThenTakeOver(t *testing.T, h Harness, cut Cutter, o Options) {
	el := newElection(t, h, o, nil)
	for _, id := range []string{"a", "b", "c"} {
		el.Start(id)
	}
	ts := el.leaderAfter(0, "a first leader")
	first := ts[0]

	// Graceful hand-over: the leader releases; a follower takes over
	// without waiting for the lease.
	releasedAt := time.Now()
	if err := el.byID(first.ID).Stop(t); err != nil {
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
	c2 := el.byID(second.ID)
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
	if third.ID == first.ID || third.ID == second.ID || third.Term != second.Term+1 {
		t.Fatalf("after %s was cut off in term %d, %s led term %d; want the third candidate with term %d", second.ID, second.Term, third.ID, third.Term, second.Term+1)
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
func deletedRecordWithALaggingFollower(t *testing.T, h Harness, o Options) {
	el := newElection(t, h, o, nil)
	el.Start("a")
	el.Start("b")
	first := el.leaderAfter(0, "a first leader")[0]
	lagging := &laggingLock{}
	el.start("c", func(l lock.Interface) lock.Interface { lagging.Interface = l; return lagging })
	if !el.waitObserved(0) {
		t.Fatalf("%s's term %d ended before c read it (a slow store?)", first.ID, first.Term)
	}

	// From here c reads nothing: it misses the hand-over.
	lagging.stalled.Store(true)
	if err := el.byID(first.ID).Stop(t); err != nil {
		t.Fatalf("%s: Run after cancel: %v", first.ID, err)
	}
	second := el.leaderAfter(1, "a leader after the release")[1]
	deletedAt := time.Now()
	h.Delete(t, el.name)
	lagging.stalled.Store(false)
	if second.ID == "c" || second.Term != first.Term+1 {
		t.Fatalf("after %s released term %d, %s led term %d; want the other candidate than c with term %d", first.ID, first.Term, second.ID, second.Term, first.Term+1)
	}
	if err := el.byID(second.ID).Wait(t, o.Wait); !errors.Is(err, leaderelection.ErrLeaseLost) {
		t.Errorf("%s, whose record was deleted: Run returned %v, want ErrLeaseLost", second.ID, err)
	}
	ts := el.leaderAfter(2, "c to lead after the deletion")
	if end := ts[1].End; end.Before(deletedAt) {
		t.Fatalf("%s's term %d ended at %v, before the record was deleted at %v (a slow store?): nothing was tested", second.ID, second.Term, end, deletedAt)
	}
	third := ts[2]
	checkCLedAbove(t, ts, second)
	el.Tracker.Check(t)
	t.Logf("c last read term %d; %s led term %d; record deleted; c led term %d %v later",
		first.Term, second.ID, second.Term, third.Term, third.Start.Sub(deletedAt).Round(time.Millisecond))
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
func deletedRecordRecreatedByAFollowerThatMissedATerm(t *testing.T, h Harness, o Options) {
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
	gated := map[string]*gatedLock{}
	for _, id := range []string{"a", "b"} {
		g := &gatedLock{}
		el.start(id, func(l lock.Interface) lock.Interface { g.Interface = l; return g })
		gated[id] = g
	}
	first := el.leaderAfter(0, "a first leader")[0]
	c := &laggingLock{}
	el.start("c", func(l lock.Interface) lock.Interface { c.Interface = l; return c })
	if !el.waitObserved(0) {
		t.Fatalf("%s's term %d ended before c read it (a slow store?)", first.ID, first.Term)
	}

	// From here c's reads find no record.
	c.blind.Store(true)
	waitUntil(t, o.Wait, "c to find the record gone", func() bool { return c.blindReads.Load() > 0 })
	if err := el.byID(first.ID).Stop(t); err != nil {
		t.Fatalf("%s: Run after cancel: %v", first.ID, err)
	}
	second := el.leaderAfter(1, "a leader after the release")[1]
	if second.ID == "c" || second.Term != first.Term+1 {
		t.Fatalf("after %s released term %d, %s led term %d; want the other candidate than c with term %d", first.ID, first.Term, second.ID, second.Term, first.Term+1)
	}
	// c's wait from its first not-found is over once it tries to write.
	waitUntil(t, o.Wait+o.LeaseDuration, "c to try to create the record", func() bool { return c.blindWrites.Load() > 0 })

	resume := gated[second.ID].hold()
	defer resume()
	h.Delete(t, el.name)
	c.blind.Store(false)
	waitUntil(t, o.Wait, "c to recreate the record", c.created.Load)
	recreatedAt := time.Now()
	resume()

	if err := el.byID(second.ID).Wait(t, o.Wait); !errors.Is(err, leaderelection.ErrLeaseLost) {
		t.Errorf("%s, whose record was deleted and recreated by c: Run returned %v, want ErrLeaseLost", second.ID, err)
	}
	ts := el.leaderAfter(2, "c to lead after the deletion")
	if end := ts[1].End; end.Before(recreatedAt) {
		t.Fatalf("%s's term %d ended at %v, before c recreated the record at %v (a slow store?): nothing was tested", second.ID, second.Term, end, recreatedAt)
	}
	third := ts[2]
	checkCLedAbove(t, ts, second)
	el.Tracker.Check(t)
	t.Logf("c last read term %d; %s led term %d; c recreated the record; c led term %d %v later",
		first.Term, second.ID, second.Term, third.Term, third.Start.Sub(recreatedAt).Round(time.Millisecond))
}

// checkCLedAbove checks that no term in ts was held by two identities, and
// that the third tenure was c's, with a term above second's, the last one
// used before the deletion.
func checkCLedAbove(t *testing.T, ts []Term, second Term) {
	t.Helper()
	holders := map[int64]string{}
	for _, tm := range ts {
		if id, ok := holders[tm.Term]; ok && id != tm.ID {
			t.Errorf("term %d held by %s and by %s: a sink fencing on terms cannot tell their writes apart", tm.Term, id, tm.ID)
		}
		holders[tm.Term] = tm.ID
	}
	if third := ts[2]; third.ID != "c" || third.Term <= second.Term {
		t.Errorf("after the deletion %s led term %d; want c with a term above %d, the last one used", third.ID, third.Term, second.Term)
	}
}

// waitUntil polls cond until it holds, and fails the test after within.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising with it
	}
}

// laggingLock is a candidate's lock that cannot watch, so the candidate
// polls, and whose store calls fail while stalled is set, as if the store
// were out of its reach: the candidate misses whatever happens meanwhile.
// While blind is set, Get reports no record (as if every read fell while
// the record was gone) and writes fail.
type laggingLock struct {
	lock.Interface
	stalled atomic.Bool
	blind   atomic.Bool
	// blindReads and blindWrites count the calls made while blind;
	// created is set once a Create has succeeded.
	blindReads, blindWrites atomic.Int32
	created                 atomic.Bool
}

func (l *laggingLock) stall() error {
	return fmt.Errorf("%s: the test keeps this candidate from reaching the store", l.Describe())
}

func (l *laggingLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	if l.blind.Load() {
		l.blindReads.Add(1)
		return nil, nil, lock.NewNotFound(l.Describe())
	}
	if l.stalled.Load() {
		return nil, nil, l.stall()
	}
	return l.Interface.Get(ctx)
}

func (l *laggingLock) Create(ctx context.Context, rec lock.Record) error {
	if l.blind.Load() {
		l.blindWrites.Add(1)
		return l.stall()
	}
	if l.stalled.Load() {
		return l.stall()
	}
	err := l.Interface.Create(ctx, rec)
	if err == nil {
		l.created.Store(true)
	}
	return err
}

func (l *laggingLock) Update(ctx context.Context, rec lock.Record) error {
	if l.blind.Load() {
		l.blindWrites.Add(1)
		return l.stall()
	}
	if l.stalled.Load() {
		return l.stall()
	}
	return l.Interface.Update(ctx, rec)
}

// gatedLock is a candidate's lock (that cannot watch) whose Updates wait
// while the test holds them, as a renewal slowed down on its way to the
// store would, until resumed or their context ends.
type gatedLock struct {
	lock.Interface
	mu   sync.Mutex
	cond *sync.Cond    // on mu: busy went down
	gate chan struct{} // nil: Updates go through
	busy int           // Updates past the gate, not yet returned
}

// hold makes Updates wait until resume is called (more than once is fine).
// It returns once no Update that went through before is still running, so
// that no renewal the caller did not hold sees what it does next (a
// deletion, say).
func (g *gatedLock) hold() (resume func()) {
	gate := make(chan struct{})
	g.mu.Lock()
	g.gate = gate
	for g.busy > 0 {
		g.waitBusy()
	}
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			g.gate = nil
			g.mu.Unlock()
			close(gate)
		})
	}
}

// waitBusy waits, with g.mu held, until busy may have gone down.
func (g *gatedLock) waitBusy() {
	if g.cond == nil {
		g.cond = sync.NewCond(&g.mu)
	}
	g.cond.Wait()
}

func (g *gatedLock) Update(ctx context.Context, rec lock.Record) error {
	for {
		g.mu.Lock()
		gate := g.gate
		if gate == nil {
			g.busy++
			g.mu.Unlock()
			break
		}
		g.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
			return fmt.Errorf("%s: update held by the test: %w", g.Describe(), ctx.Err())
		}
	}
	defer func() {
		g.mu.Lock()
		g.busy--
		if g.cond != nil {
			g.cond.Broadcast()
		}
		g.mu.Unlock()
	}()
	return g.Interface.Update(ctx, rec)
}
