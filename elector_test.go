package leaderelection

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

const (
	testLease   = 3 * time.Second
	testRenew   = 2 * time.Second
	testRetry   = time.Second
	testTimeout = 10 * time.Second // real time allowed for a condition to come true
)

// waitFor polls cond until it holds or testTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(testTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// election is a set of candidates on one memory store and one fake clock,
// with a check, made whenever a candidate starts leading, that no other
// candidate believes it leads.
type election struct {
	t     *testing.T
	clk   *clocktesting.FakeClock
	store *locktest.MemoryStore

	mu    sync.Mutex
	cands []*candidate
	terms []int64  // every term started, in order
	who   []string // who started each of them
}

type candidate struct {
	id       string
	e        *Elector
	lk       lock.Interface
	cancel   context.CancelFunc
	done     chan error
	started  atomic.Int32
	stopped  atomic.Int32
	fnExited atomic.Int32
	leadCtx  atomic.Value // context.Context of the current term
	ignore   atomic.Bool  // the leader's function ignores cancellation
	release  chan struct{}
	parked   atomic.Bool // blocked in its select, timers armed
	exited   atomic.Bool // Run returned
}

func newElection(t *testing.T) *election {
	return &election{
		t:     t,
		clk:   clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		store: locktest.NewMemoryStore("test"),
	}
}

func (el *election) config(c *candidate) Config {
	return Config{
		Lock:            c.lk,
		LeaseDuration:   testLease,
		RenewDeadline:   testRenew,
		RetryPeriod:     testRetry,
		ReleaseOnCancel: true,
		Clock:           el.clk,
		Callbacks: Callbacks{
			OnStartedLeading: func(ctx context.Context) {
				el.started(c, ctx)
				c.leadCtx.Store(ctx)
				c.started.Add(1)
				defer c.fnExited.Add(1)
				if c.ignore.Load() {
					<-c.release
					return
				}
				<-ctx.Done()
			},
			OnStoppedLeading: func() { c.stopped.Add(1) },
		},
	}
}

func (el *election) started(c *candidate, ctx context.Context) {
	el.mu.Lock()
	defer el.mu.Unlock()
	term, ok := TermFrom(ctx)
	if !ok {
		el.t.Errorf("%s: leader context carries no term", c.id)
	}
	if term != c.e.Term() {
		el.t.Errorf("%s: TermFrom = %d, Term() = %d", c.id, term, c.e.Term())
	}
	if n := len(el.terms); n > 0 && term <= el.terms[n-1] {
		el.t.Errorf("%s: term %d does not increase on %d", c.id, term, el.terms[n-1])
	}
	el.terms = append(el.terms, term)
	el.who = append(el.who, c.id)
	for _, o := range el.cands {
		if o != c && o.e != nil && o.e.IsLeader() {
			el.t.Errorf("%s started leading (term %d) while %s still leads (term %d)", c.id, term, o.id, o.e.Term())
		}
	}
}

// add starts a candidate; mod may adjust its config and lock.
func (el *election) add(id string, mod func(*Config)) *candidate {
	el.t.Helper()
	return el.addElector(id, mod, nil)
}

// addElector is add, with emod adjusting the elector before it runs.
func (el *election) addElector(id string, mod func(*Config), emod func(*Elector)) *candidate {
	el.t.Helper()
	c := &candidate{id: id, lk: el.store.Lock(id), done: make(chan error, 1), release: make(chan struct{})}
	cfg := el.config(c)
	if mod != nil {
		mod(&cfg)
	}
	c.lk = cfg.Lock
	e, err := NewElector(cfg)
	if err != nil {
		el.t.Fatalf("NewElector(%s): %v", id, err)
	}
	if emod != nil {
		emod(e)
	}
	el.start(c, e)
	cancel := c.cancel
	el.t.Cleanup(func() {
		cancel()
		select {
		case <-c.done:
		case <-time.After(testTimeout):
			el.t.Errorf("%s: Run did not return after cancel", id)
		}
	})
	return c
}

// parkingClock is the election's fake clock, seen by one candidate: a
// timer of the candidate's that fires marks it as no longer parked, within
// the clock step that fired it, so that settle waits for it to act.
type parkingClock struct {
	*clocktesting.FakeClock
	c *candidate
}

func (p parkingClock) NewTimer(d time.Duration) clock.Timer {
	return p.FakeClock.AfterFunc(d, func() { p.c.parked.Store(false) })
}

func (p parkingClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return p.FakeClock.AfterFunc(d, func() { p.c.parked.Store(false); f() })
}

// start runs e for c.
func (el *election) start(c *candidate, e *Elector) {
	c.e = e
	var clk clock.WithDelayedExecution = parkingClock{el.clk, c}
	if sc, ok := e.clock.(*steppedClock); ok {
		sc.WithDelayedExecution = clk
		clk = sc
	}
	e.clock = clk
	e.park = func(p bool) { c.parked.Store(p) }
	el.mu.Lock()
	el.cands = append(el.cands, c)
	el.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		err := e.Run(ctx)
		c.exited.Store(true)
		c.done <- err
	}()
}

// settle waits until every running candidate is blocked with its timers
// armed, so that the test can move the fake clock without racing an
// elector that is between reading the clock and arming a timer.
func (el *election) settle(t *testing.T) {
	t.Helper()
	waitFor(t, "every candidate to settle", func() bool {
		el.mu.Lock()
		defer el.mu.Unlock()
		for _, c := range el.cands {
			if !c.exited.Load() && !c.parked.Load() {
				return false
			}
		}
		return true
	})
}

// step settles, moves the clock by d and settles again.
func (el *election) step(t *testing.T, d time.Duration) {
	t.Helper()
	el.settle(t)
	el.clk.Step(d)
}

// setTime settles and sets the clock.
func (el *election) setTime(t *testing.T, to time.Time) {
	t.Helper()
	el.settle(t)
	el.clk.SetTime(to)
}

// takesOverAt checks that c does not lead just before at (when, says
// why, it may take over), and leads at at.
func (el *election) takesOverAt(t *testing.T, c *candidate, at time.Time, why string) {
	t.Helper()
	el.setTime(t, at.Add(-time.Millisecond))
	el.settle(t)
	if c.e.IsLeader() {
		t.Fatalf("%s took over before %v: %s", c.id, at, why)
	}
	el.setTime(t, at)
	waitFor(t, c.id+" to take over at "+why, c.e.IsLeader)
}

// stepUntilLeads moves the clock a quarter RetryPeriod at a time until c
// leads, and fails the test (saying when: after) if it does not within.
func (el *election) stepUntilLeads(t *testing.T, c *candidate, within time.Duration, after string) {
	t.Helper()
	for start := el.clk.Now(); !c.e.IsLeader() && el.clk.Since(start) < within; {
		el.step(t, testRetry/4)
	}
	if !c.e.IsLeader() {
		t.Fatalf("%s does not lead %v %s", c.id, within, after)
	}
}

// wantTerms waits for last's function to start, then checks the terms
// started so far and who led them (want explains the expectation).
func (el *election) wantTerms(t *testing.T, last *candidate, terms []int64, who []string, want string) {
	t.Helper()
	waitFor(t, last.id+"'s function to start", func() bool { return last.started.Load() > 0 })
	el.mu.Lock()
	gotTerms, gotWho := slices.Clone(el.terms), slices.Clone(el.who)
	el.mu.Unlock()
	if !slices.Equal(gotTerms, terms) || !slices.Equal(gotWho, who) {
		t.Fatalf("terms %v led by %v; %s", gotTerms, gotWho, want)
	}
}

// wait returns Run's result.
func (c *candidate) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err // keep it for cleanup
		return err
	case <-time.After(testTimeout):
		t.Fatalf("%s: Run did not return", c.id)
		return nil
	}
}

func (el *election) holder(t *testing.T) lock.Record {
	t.Helper()
	rec, _, err := el.store.Lock("reader").Get(context.Background())
	if err != nil {
		t.Fatalf("reading the store: %v", err)
	}
	return *rec
}

// failingLeader starts candidate a on a lock the test can make fail, waits
// for it to lead, then starts b (its config adjusted by bmod) and waits for b
// to see a as the leader.
func (el *election) failingLeader(t *testing.T, bmod func(*Config)) (a, b *candidate, fa *failingLock) {
	t.Helper()
	fa = &failingLock{Interface: el.store.Lock("a")}
	a = el.add("a", func(c *Config) { c.Lock = fa })
	waitFor(t, "a to lead", a.e.IsLeader)
	b = el.add("b", bmod)
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	return a, b, fa
}

// failingLock makes Get and Update fail while fail is set, and Create
// while failCreate is.
type failingLock struct {
	lock.Interface
	fail       atomic.Bool
	failCreate atomic.Bool
	attempts   atomic.Int32
}

func (f *failingLock) Create(ctx context.Context, r lock.Record) error {
	if f.failCreate.Load() {
		f.attempts.Add(1)
		return errors.New("injected store failure")
	}
	return f.Interface.Create(ctx, r)
}

func (f *failingLock) Update(ctx context.Context, r lock.Record) error {
	if f.fail.Load() {
		f.attempts.Add(1)
		return errors.New("injected store failure")
	}
	return f.Interface.Update(ctx, r)
}

func (f *failingLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	if f.fail.Load() {
		f.attempts.Add(1)
		return nil, nil, errors.New("injected store failure")
	}
	return f.Interface.Get(ctx)
}

// blindLock hides the Watcher of the lock it wraps, as a store that
// cannot notify.
type blindLock struct{ lock.Interface }

// endedWatchLock is a lock whose watch has ended for good: its Changes
// channel is closed at once.
type endedWatchLock struct{ lock.Interface }

func (endedWatchLock) Changes(context.Context) <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

// downWatchLock is a lock whose watch is down for now: it reports so
// through lock.WatchState and signals nothing.
type downWatchLock struct{ lock.Interface }

func (downWatchLock) Changes(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{})
	context.AfterFunc(ctx, func() { close(ch) })
	return ch
}

func (downWatchLock) Watching() bool { return false }

func TestFirstCandidateAcquiresWithTermOne(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	if got := a.e.Term(); got != 1 {
		t.Errorf("first term = %d, want 1", got)
	}
	if rec := el.holder(t); rec.HolderIdentity != "a" || rec.LeaseDurationSeconds != 3 || rec.LeaderTransitions != 1 {
		t.Errorf("stored record %+v, want holder a, 3s, 1 transition", rec)
	}
	if s := a.e.Status(); !s.Leading || s.Leader != "a" || s.Identity != "a" || s.Term != 1 || !s.Expiry.Equal(el.clk.Now().Add(testLease)) {
		t.Errorf("status %+v", s)
	}
}

// A follower's status shows the leader and the leader's term (its own
// term is 0: it never led).
func TestFollowerStatusShowsTheLeadersTerm(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	el.stepUntilLeads(t, a, 2*testLease, "a alone")
	b := el.add("b", nil)
	el.step(t, testRetry)
	waitFor(t, "b to observe a", func() bool { return b.e.Status().Leader == "a" })
	if s := b.e.Status(); s.LeaderTerm != a.e.Term() || s.Term != 0 || s.Leading {
		t.Fatalf("follower status: leader %q leaderTerm %d term %d leading %v; want a's term %d, term 0, not leading", s.Leader, s.LeaderTerm, s.Term, s.Leading, a.e.Term())
	}
	if s := a.e.Status(); s.LeaderTerm != s.Term {
		t.Fatalf("leader status: leaderTerm %d, term %d; want equal", s.LeaderTerm, s.Term)
	}
}

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

// agedLock is a lock.Aged that reports, for the record first written at
// writtenAt, the true time since then on the election's clock: the most a
// correct lock may report.
type agedLock struct {
	lock.Interface
	el        *election
	writtenAt time.Time
	raw       []byte
}

func (a *agedLock) Age(raw []byte) (time.Duration, bool) {
	if string(raw) != string(a.raw) {
		return 0, false
	}
	return a.el.clk.Since(a.writtenAt), true
}

func TestFollowerMeasuresTheLeaseFromTheWriteWhenTheLockKnowsItsAge(t *testing.T) {
	el := newElection(t)
	fa := &failingLock{Interface: el.store.Lock("a")}
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
		c.Lock = &agedLock{Interface: c.Lock, el: el, writtenAt: acquired, raw: raw}
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
	_, b, fa := el.failingLeader(t, func(c *Config) { c.Lock = blindLock{el.store.Lock("b")} })
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
	b := el.add("b", func(c *Config) { c.Lock = blindLock{el.store.Lock("b")} })
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	a.cancel()
	if err := a.wait(t); err != nil {
		t.Fatal(err)
	}
	el.step(t, time.Duration((1+JitterFactor)*float64(testRetry)))
	waitFor(t, "b to lead after one poll", b.e.IsLeader)
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

func TestOnNewLeaderReportsEachHolder(t *testing.T) {
	el := newElection(t)
	var mu sync.Mutex
	var seen []string
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	b := el.add("b", func(c *Config) {
		c.Callbacks.OnNewLeader = func(id string) { mu.Lock(); seen = append(seen, id); mu.Unlock() }
	})
	waitFor(t, "b to hear of a", func() bool { mu.Lock(); defer mu.Unlock(); return len(seen) == 1 })
	a.cancel()
	waitFor(t, "b to lead", b.e.IsLeader)
	waitFor(t, "b to hear of itself", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) > 0 && seen[len(seen)-1] == "b"
	})
	mu.Lock()
	defer mu.Unlock()
	if seen[0] != "a" {
		t.Fatalf("OnNewLeader saw %q", seen)
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

func TestRestartedIdentityWaitsForItsOldLease(t *testing.T) {
	el := newElection(t)
	fa := &failingLock{Interface: el.store.Lock("a")}
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

func TestConfigValidationNamesEachField(t *testing.T) {
	good := func() Config {
		return Config{
			Lock:          locktest.NewMemoryStore("v").Lock("a"),
			LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
			Callbacks: Callbacks{OnStartedLeading: func(context.Context) {}},
		}
	}
	if err := func() error { c := good(); return c.Validate() }(); err != nil {
		t.Fatalf("valid config rejected: %v", err)
	}
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"lease not above renew", func(c *Config) { c.LeaseDuration = c.RenewDeadline }, "LeaseDuration"},
		{"renew not above 1.2 retry", func(c *Config) { c.RetryPeriod = 9 * time.Second }, "RenewDeadline"},
		{"zero lease", func(c *Config) { c.LeaseDuration = 0 }, "LeaseDuration"},
		{"sub-second lease", func(c *Config) {
			c.LeaseDuration = 900 * time.Millisecond
			c.RenewDeadline = 500 * time.Millisecond
			c.RetryPeriod = 100 * time.Millisecond
		}, "LeaseDuration (900ms) must be at least 1s"},
		{"sub-second retry", func(c *Config) { c.RetryPeriod = 500 * time.Millisecond }, "RetryPeriod (500ms) must be at least 1s"},
		{"negative renew", func(c *Config) { c.RenewDeadline = -1 }, "RenewDeadline"},
		{"zero retry", func(c *Config) { c.RetryPeriod = 0 }, "RetryPeriod"},
		{"negative stop timeout", func(c *Config) { c.StopTimeout = -time.Second }, "StopTimeout"},
		{"term limit below retry", func(c *Config) { c.TermLimit = time.Second }, "TermLimit"},
		{"no callback", func(c *Config) { c.Callbacks.OnStartedLeading = nil }, "OnStartedLeading"},
		{"no lock", func(c *Config) { c.Lock = nil }, "Lock must not be nil"},
		{"no identity", func(c *Config) { c.Lock = locktest.NewMemoryStore("v").Lock("") }, "identity"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.mod(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error mentioning %q", err, tc.want)
			}
			if _, err := NewElector(c); err == nil {
				t.Fatal("NewElector accepted an invalid config")
			}
		})
	}
}

func TestRunTwiceIsAnError(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	if err := a.e.Run(context.Background()); err == nil {
		t.Fatal("second Run succeeded")
	}
}

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
	b := el.add("b", func(c *Config) { c.Lock = blindLock{el.store.Lock("b")} })
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
	var goneAt atomic.Pointer[time.Time]
	b := el.add("b", func(c *Config) {
		c.Lock = &goneClockLock{Interface: el.store.Lock("b"), clk: el.clk, goneAt: &goneAt}
	})
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

	for goneAt.Load() == nil {
		el.step(t, testRetry/10)
	}
	gone := *goneAt.Load()
	if !gone.Before(b.e.Status().Expiry) {
		t.Fatalf("b first found the record gone at %v, after a's lease it observed (%v): the test needs it before", gone, b.e.Status().Expiry)
	}
	el.claimsAt(t, b, gone.Add(testLease), "a lease after it first found the record gone (a holder it never saw may still work)")
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
	bLock := &signalLock{Interface: el.store.Lock("b"), ch: make(chan struct{}, 1)}
	b := el.add("b", func(c *Config) { c.Lock = bLock })
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	t0 := el.clk.Now()

	el.store.Delete()
	bLock.ch <- struct{}{} // b reads now, and finds the record gone
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
	hook := &beforeCreateLock{before: func() {
		rec := lock.Record{HolderIdentity: "b", LeaseDurationSeconds: int(testLease / time.Second), LeaderTransitions: 1}
		if err := claimant.Create(context.Background(), rec); err != nil {
			t.Errorf("b's claim: %v", err)
		}
	}}
	a := el.add("a", func(c *Config) {
		deafUntil(deaf, c)
		hook.Interface = c.Lock
		c.Lock = hook
	})
	defer deaf.open()
	waitFor(t, "a to lead", a.e.IsLeader)
	hook.armed.Store(true)

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

// beforeCreateLock calls before, once, ahead of the first Create after
// armed is set.
type beforeCreateLock struct {
	lock.Interface
	before func()
	armed  atomic.Bool
	once   sync.Once
}

func (l *beforeCreateLock) Create(ctx context.Context, rec lock.Record) error {
	if l.armed.Load() {
		l.once.Do(l.before)
	}
	return l.Interface.Create(ctx, rec)
}

// signalLock replaces the watch of the lock it wraps by ch: the candidate
// reads when the test signals, or when its own timers fire. gone counts
// the reads that found no record.
type signalLock struct {
	lock.Interface
	ch   chan struct{}
	gone atomic.Int32
}

func (s *signalLock) Changes(context.Context) <-chan struct{} { return s.ch }

func (s *signalLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	rec, raw, err := s.Interface.Get(ctx)
	if lock.IsNotFound(err) {
		s.gone.Add(1)
	}
	return rec, raw, err
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
	c := el.add("c", func(c *Config) { c.Lock = plainNotFound{el.store.Lock("c")} })
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
	fb := &failingLock{Interface: el.store.Lock("b")}
	bLock := &signalLock{Interface: fb, ch: make(chan struct{}, 1)}
	b := el.add("b", func(c *Config) { c.Lock = bLock })
	waitFor(t, "b to see x", func() bool { return b.e.GetLeader() == "x" })
	fb.fail.Store(true)

	el.store.Delete()
	gone := el.clk.Now()
	c := el.add("c", func(c *Config) { c.Lock = plainNotFound{el.store.Lock("c")} })
	el.setTime(t, gone.Add(testRenew+testRetry/4))
	fb.fail.Store(false)
	bLock.ch <- struct{}{}
	el.stepUntilLeads(t, b, 3*(testLease+testRenew), "after the deletion")
	if c.e.IsLeader() {
		t.Fatal("c leads beside b")
	}
	el.wantTerms(t, b, []int64{6}, []string{"b"}, "want only term 6, led by b (c's claim for term 1 replaced)")
}

// The git campaign's other case: the leader's renewals were too slow, so
// its step-down timer fired before any renewal found the record deleted,
// and it wrote no tombstone (too late: see term.tombstone). A fresh
// candidate claimed term 1 meanwhile. The leader was the one process that
// knew the count, and Run was about to return (the example then exits).
// On its way out it reads the lock, finds a claim with a term not above
// its own, and replaces it with its tombstone; the claim's confirmation
// fails and the count goes on. Before, the claim stood and c led term 1.
// claimedUnderALostLeader: a leads (on a failingLock, wrapped by wrap if
// set) until its store fails, and stays deaf to cancellation (its function
// returns when deaf opens); it loses its term, the record is deleted, and
// c, a fresh candidate, claims term 1.
func (el *election) claimedUnderALostLeader(t *testing.T, wrap func(lock.Interface) lock.Interface) (a *candidate, fa *failingLock, deaf *gate, c *candidate) {
	t.Helper()
	fa = &failingLock{Interface: el.store.Lock("a")}
	var l lock.Interface = fa
	if wrap != nil {
		l = wrap(fa)
	}
	a, deaf, _ = el.deafLeader(t, l)
	fa.fail.Store(true) // renewals (and the tombstone) fail: a slow store
	fa.failCreate.Store(true)
	for a.e.IsLeader() {
		el.step(t, testRetry/4)
	}
	el.store.Delete()
	c = el.add("c", func(c *Config) { c.Lock = plainNotFound{el.store.Lock("c")} })
	waitFor(t, "c to claim the lock", func() bool {
		rec, _, err := el.store.Lock("x").Get(context.Background())
		return err == nil && rec.HolderIdentity == "c" && lock.IsClaim(*rec)
	})
	return a, fa, deaf, c
}

func TestLeaderLeavingReplacesALowerClaimWithItsTombstone(t *testing.T) {
	el := newElection(t)
	a, fa, deaf, c := el.claimedUnderALostLeader(t, nil)
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

// interposedLock runs before (once, if set) just before the next Update
// reaches the lock it wraps: another writer that gets in between.
type interposedLock struct {
	lock.Interface
	before atomic.Pointer[func()]
}

func (l *interposedLock) Update(ctx context.Context, r lock.Record) error {
	if f := l.before.Swap(nil); f != nil {
		(*f)()
	}
	return l.Interface.Update(ctx, r)
}

// The git campaign's term held twice (fault 257): the leaving leader's
// last look read a fresh claim for term 1, but before its tombstone
// landed, a follower that had not seen the leader's term replaced that
// claim with its own for the leader's term. The tombstone's
// compare-and-swap failed, and the follower led the leader's term again.
// The last look must read again and replace that claim too.
func TestLeaderLeavingReplacesEveryClaimNotAboveItsTermThatWinsARace(t *testing.T) {
	el := newElection(t)
	var il *interposedLock
	a, fa, deaf, c := el.claimedUnderALostLeader(t, func(l lock.Interface) lock.Interface {
		il = &interposedLock{Interface: l}
		return il
	})
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
	il.before.Store(&cut)
	fa.fail.Store(false)
	fa.failCreate.Store(false)
	deaf.open() // a's function returns: Run is about to return
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a's Run = %v, want ErrLeaseLost", err)
	}
	if il.before.Load() != nil {
		t.Fatal("a's last look wrote nothing: the race was not run")
	}
	if rec := el.holder(t); rec.HolderIdentity != "a" || rec.LeaderTransitions != 1 || lock.IsClaim(rec) {
		t.Fatalf("record %+v after a left; want a's tombstone for term 1 in place of d's claim", rec)
	}
	el.stepUntilLeads(t, c, 4*(testLease+testRenew), "after a left")
	el.wantTerms(t, c, []int64{1, 2}, []string{"a", "c"}, "want 1, 2 led by a, c (not term 1 twice)")
}

// lateLock makes Create hang on a gate while armed, ignoring the call's
// context, and then fail if that context has ended meanwhile (as go-git
// does: "listing references: context canceled"). creates counts the
// Creates that have returned.
type lateLock struct {
	lock.Interface
	create  atomic.Pointer[gate]
	creates atomic.Int32
}

func (l *lateLock) Create(ctx context.Context, r lock.Record) error {
	defer l.creates.Add(1)
	if g := l.create.Load(); g != nil {
		g.wait()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return l.Interface.Create(ctx, r)
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
	hl := &hangingLock{Interface: el.store.Lock("a")} // the renewal answers, late
	ll := &lateLock{Interface: hl}
	a, deaf, good := el.deafLeader(t, ll)

	renewal, create := newGate(t), newGate(t)
	hl.update.Store(renewal)
	el.step(t, testRetry)
	waitFor(t, "a's renewal to hang", func() bool { return renewal.entered.Load() == 1 })
	el.clk.SetTime(good.Add(testRenew - time.Millisecond)) // a is inside the call: nothing to settle
	el.store.Delete()
	created := ll.creates.Load()
	ll.create.Store(create)
	renewal.open() // the renewal finds the record gone, 1ms before the deadline
	waitFor(t, "a's tombstone Create to hang", func() bool { return create.entered.Load() == 1 })
	el.clk.SetTime(good.Add(testRenew + time.Millisecond))
	create.open()
	waitFor(t, "a's tombstone Create to return", func() bool { return ll.creates.Load() == created+1 })
	if rec, _, err := el.store.Lock("x").Get(context.Background()); err != nil || rec.HolderIdentity != "a" || rec.LeaderTransitions != 1 {
		t.Fatalf("record %+v (%v) after a's tombstone landed after its renewal deadline; want a's term 1", rec, err)
	}

	deaf.open()
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("a's Run = %v, want ErrLeaseLost", err)
	}
	r := el.add("a-restarted", func(c *Config) { c.Lock = plainNotFound{el.store.Lock("a-restarted")} })
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
			fa := &failingLock{Interface: el.store.Lock("a")}
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
			r := el.add("a-restarted", func(c *Config) { c.Lock = plainNotFound{el.store.Lock("a-restarted")} })
			el.stepUntilLeads(t, r, 4*(testLease+testRenew), "after a left")
			el.wantTerms(t, r, tc.want, []string{"a", "a-restarted"}, "want 1, 2 (not term 1 twice)")
		})
	}
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
	b := el.add("b", func(c *Config) { c.Lock = plainNotFound{el.store.Lock("b")} })
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
	sl := &slowReadLock{plainNotFound: plainNotFound{el.store.Lock("b")}, clk: el.clk, read: testRetry}
	b := el.add("b", func(c *Config) { c.Lock = sl })
	el.stepUntilLeads(t, b, 4*(testLease+testRenew+3*testRetry), "")
	created := sl.created.Load()
	if want := created.Add(testLease + testRenew + 3*testRetry); b.e.Status().LastRenew.Before(want) {
		t.Fatalf("b led at %v, %v after it created its claim; want no earlier than %v (LeaseDuration + RenewDeadline + 3 reads of %v)", b.e.Status().LastRenew, b.e.Status().LastRenew.Sub(*created), want, testRetry)
	}
}

// slowReadLock is a polling lock whose reads take read on the fake clock;
// it notes the time of its first not-found and of its Create.
type slowReadLock struct {
	plainNotFound
	clk                *clocktesting.FakeClock
	read               time.Duration
	firstGone, created atomic.Pointer[time.Time]
}

func (s *slowReadLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	s.clk.Step(s.read)
	rec, raw, err := s.plainNotFound.Get(ctx)
	if now := s.clk.Now(); lock.IsNotFound(err) && s.firstGone.Load() == nil {
		s.firstGone.Store(&now)
	}
	return rec, raw, err
}

func (s *slowReadLock) Create(ctx context.Context, r lock.Record) error {
	now := s.clk.Now()
	s.created.Store(&now)
	return s.plainNotFound.Create(ctx, r)
}

// plainNotFound hides the watch of the lock it wraps and turns a
// never-written not-found into a plain one, as a real store returns.
type plainNotFound struct{ lock.Interface }

func (p plainNotFound) Get(ctx context.Context) (*lock.Record, []byte, error) {
	rec, raw, err := p.Interface.Get(ctx)
	if lock.IsNotFound(err) {
		err = lock.NewNotFound(p.Describe())
	}
	return rec, raw, err
}

// goneClockLock hides the watch of the lock it wraps (a polling follower)
// and notes the fake time of the first Get that found no record.
type goneClockLock struct {
	lock.Interface
	clk    clock.PassiveClock
	goneAt *atomic.Pointer[time.Time]
}

func (g *goneClockLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	rec, raw, err := g.Interface.Get(ctx)
	if lock.IsNotFound(err) && g.goneAt.Load() == nil {
		now := g.clk.Now()
		g.goneAt.Store(&now)
	}
	return rec, raw, err
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
	took := releasedThenPolled(t, func(l lock.Interface) lock.Interface { return endedWatchLock{l} })
	if limit := time.Duration((1 + JitterFactor) * float64(testRetry)); took > limit {
		t.Fatalf("a follower whose watch ended took over %v after a release; polling every RetryPeriod with jitter bounds it by %v", took, limit)
	}
}

func TestFollowerPollsEveryRetryPeriodWhileItsWatchIsDown(t *testing.T) {
	took := releasedThenPolled(t, func(l lock.Interface) lock.Interface { return downWatchLock{l} })
	if limit := time.Duration((1 + JitterFactor) * float64(testRetry)); took > limit {
		t.Fatalf("a follower whose watch is down took over %v after a release; polling every RetryPeriod with jitter bounds it by %v", took, limit)
	}
}

func TestTermLimitMovesLeadershipToAnotherCandidate(t *testing.T) {
	el := newElection(t)
	polling := func(c *Config) {
		c.TermLimit = 5 * time.Second
		c.Lock = endedWatchLock{c.Lock}
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

// gate is a callback, or a store call, that blocks until opened, whatever
// its context says.
type gate struct {
	ch      chan struct{}
	once    sync.Once
	entered atomic.Int32
}

func newGate(t *testing.T) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// ctx is a context that ends when g opens.
func (g *gate) ctx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-g.ch; cancel() }()
	return ctx
}
func (g *gate) wait() { g.entered.Add(1); <-g.ch }

// deafUntil makes the leader's function in c ignore the elector's
// cancellation until g opens.
func deafUntil(g *gate, c *Config) {
	work := c.Callbacks.OnStartedLeading
	c.Callbacks.OnStartedLeading = func(ctx context.Context) {
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		context.AfterFunc(g.ctx(), cancel)
		work(ctx)
	}
}

// hangingLock makes Create, or Update, hang on a gate, ignoring the call's
// context, while armed.
type hangingLock struct {
	lock.Interface
	create, update atomic.Pointer[gate]
}

func (h *hangingLock) Create(ctx context.Context, r lock.Record) error {
	if g := h.create.Load(); g != nil {
		g.wait()
		ctx = context.WithoutCancel(ctx) // and then succeeds, late
	}
	return h.Interface.Create(ctx, r)
}

func (h *hangingLock) Update(ctx context.Context, r lock.Record) error {
	if g := h.update.Load(); g != nil {
		g.wait()
		ctx = context.WithoutCancel(ctx)
	}
	return h.Interface.Update(ctx, r)
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

func TestSlowAcquisitionDoesNotStartTheFunction(t *testing.T) {
	el := newElection(t)
	slow := newGate(t)
	hl := &hangingLock{Interface: el.store.Lock("a")}
	hl.create.Store(slow)
	a := el.add("a", func(c *Config) { c.Lock = hl })
	waitFor(t, "a's Create to hang", func() bool { return slow.entered.Load() == 1 })
	el.clk.Step(testRenew) // a is inside the call: nothing to settle
	hl.create.Store(nil)
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
	fa := &failingLock{Interface: el.store.Lock("a")}
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
	fa := &failingLock{Interface: el.store.Lock("a")}
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

func TestStuckOnNewLeaderDoesNotHoldUpRun(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	stuck := newGate(t)
	const stopTimeout = testRenew // unlike any wait of the campaign
	b := el.add("b", func(c *Config) {
		c.StopTimeout = stopTimeout
		c.Callbacks.OnNewLeader = func(string) { stuck.wait() }
	})
	waitFor(t, "b's OnNewLeader to be called", func() bool { return stuck.entered.Load() == 1 })
	cancelled := el.clk.Now()
	b.cancel()
	waitFor(t, "b to wait for OnNewLeader", func() bool {
		return b.exited.Load() || b.e.Status().HeartbeatDue.Equal(cancelled.Add(stopTimeout+testRenew))
	})
	for el.settle(t); !b.exited.Load() && el.clk.Since(cancelled) < 2*testLease; el.settle(t) {
		el.clk.Step(100 * time.Millisecond)
	}
	if d := el.clk.Since(cancelled); d > stopTimeout {
		t.Errorf("Run returned %v after its context ended; StopTimeout is %v", d, stopTimeout)
	}
	if err := b.wait(t); err != nil {
		t.Fatalf("b's Run = %v", err)
	}
}

// skewedLock writes records whose timestamps are shifted by skew, as a
// holder whose wall clock was stepped (NTP, an operator) writes them; its
// timers, on the monotonic clock, are unaffected.
type skewedLock struct {
	lock.Interface
	skew atomic.Int64 // a time.Duration
}

func (s *skewedLock) shifted(r lock.Record) lock.Record {
	d := time.Duration(s.skew.Load())
	r.AcquireTime = metav1.NewTime(r.AcquireTime.Add(d))
	r.RenewTime = metav1.NewTime(r.RenewTime.Add(d))
	return r
}

func (s *skewedLock) Create(ctx context.Context, r lock.Record) error {
	return s.Interface.Create(ctx, s.shifted(r))
}

func (s *skewedLock) Update(ctx context.Context, r lock.Record) error {
	return s.Interface.Update(ctx, s.shifted(r))
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
			sa := &skewedLock{Interface: el.store.Lock("a")}
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

// steppedClock is a candidate's clock (Config.Clock) whose wall reading is
// off by step from the election's, as after an NTP or operator step. Its
// timers run on the election's clock, as Go's run on the monotonic one.
// (Since follows the wall reading here, so unlike Go's it is off by a step
// made within the interval it measures.)
type steppedClock struct {
	clock.WithDelayedExecution // set by election.start
	step                       atomic.Int64
}

func (s *steppedClock) Now() time.Time {
	return s.WithDelayedExecution.Now().Add(time.Duration(s.step.Load()))
}

func (s *steppedClock) Since(t time.Time) time.Duration { return s.Now().Sub(t) }

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
