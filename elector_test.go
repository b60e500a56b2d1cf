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

	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/b3df926d/leaderelection/internal/poll"
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
	poll.Until(t, what, testTimeout, cond)
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

	// parkMu guards every candidate's parked, watch and closed, and
	// parking (the candidates, for settle), so that settle sees them all
	// at one instant. It is taken after the store's hub lock (signalled)
	// and the fake clock's lock (parkingClock); nothing is taken under it.
	parkMu  sync.Mutex
	parking []*candidate
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
	exited   atomic.Bool // Run returned
	// onWake, if set, runs as the candidate wakes, before it says so: a
	// slow wake-up, as on a loaded machine.
	onWake atomic.Pointer[func()]
	// woken counts the channels its elector closed for a callback's
	// goroutine or a timer's step-down (Elector.closing): the moment each
	// marked it awake.
	woken atomic.Int32

	// parked: blocked in its select, timers armed, nothing pending that
	// ends the wait; watch and closed: the lock's watch and the channels
	// only ever closed that the wait it is in (or is about to block in)
	// also ends on. All el.parkMu.
	parked bool
	watch  <-chan struct{}
	closed []<-chan struct{}
}

func newElection(t *testing.T) *election {
	el := &election{
		t:     t,
		clk:   clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		store: locktest.NewMemoryStore("test"),
	}
	el.store.SignalAround(el.signalled)
	return el
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

// Parking: settle must not return while a candidate has something to act
// on, or the test moves the clock under it. A candidate says it parks
// (Elector.park) just before it blocks, and that it woke just after; what
// can wake it marks it awake at the moment it becomes due, before the
// candidate can run, and the candidate parks again only when it is about
// to block with nothing of that kind pending. All of it under parkMu:
//
//   - A timer (parkingClock): the fake clock fires it within Step or
//     SetTime, which the test makes between settles, and marks the
//     candidate awake within that call. A woken candidate reads the clock
//     (Elector.vitals.beat) before it parks again, so it cannot park again
//     before the mark, which would leave it marked awake while blocked. A
//     timer that fired before the candidate parks (one armed with no time
//     left, Elector.newTimer, or one a Step without a settle fired) is
//     pending at park, which then leaves it awake.
//   - A change signal from the store (signalled): the hub sends it and
//     marks the candidate awake as one step, if the wait it parked in (or
//     is about to park in: park ran, the select not yet) ends on that
//     watch. Park leaves it awake if a signal is pending on the watch (one
//     sent while it ran, or coalesced into one pending since). So it is
//     never marked parked with a signal pending, nor between receiving one
//     and saying it woke (its park(false) waits for parkMu); and a wait
//     that does not end on the watch (a leader's) is not woken by its
//     signals, which stay pending until the campaign reads them.
//   - A channel only ever closed that ends the wait (the term's loss, the
//     return of a callback run in its own goroutine): the elector closes
//     it through Elector.closing (woken), which closes it and marks the
//     candidate awake as one step, as for a signal, if the wait it parked
//     in ends on it. Park leaves it awake if one of them is closed already
//     (by the Run goroutine itself, or a timer's step-down within Step).
//   - A watch that ended: watchEnded's, closed from the start, leaves
//     park awake (endedWatches); the memory store's closes when Run's
//     context ends, which only the test does.
//   - A signal the test sends on a faultLock's watchOn: as a store's, if
//     sent with el.signal.
//   - The test's own other acts (cancel, a gate it opens) are not marked:
//     a test that makes one waits for its effect before it settles.
//
// Nothing else writes the store: a signal comes from a candidate inside a
// store call (awake) or from the test, before its call returns. So when
// settle sees every candidate parked at one instant, none has a timer,
// signal or close to act on, and none is in a store call that could give
// one something. (A callback still running is not a candidate: its return
// marks its candidate awake if that waits for it.)

// park records what c says as it parks (p) or wakes: see Elector.park.
func (el *election) park(c *candidate, p bool, watch <-chan struct{}, timers []<-chan time.Time, closed ...<-chan struct{}) {
	el.parkMu.Lock()
	defer el.parkMu.Unlock()
	c.watch, c.closed = nil, nil
	if p {
		c.watch, c.closed = watch, closed
	}
	c.parked = p && !due(watch, timers, closed)
}

// due reports whether a wait on these would end at once: a signal pending
// on the watch, or the watch ended (watchEnded: closed, which only a
// receive could tell otherwise); a timer fired; one of closed closed (a
// receive from one tells, and takes nothing: nothing is ever sent).
func due(watch <-chan struct{}, timers []<-chan time.Time, closed []<-chan struct{}) bool {
	if _, ended := endedWatches.Load(watch); ended || len(watch) > 0 {
		return true
	}
	for _, ch := range timers {
		if len(ch) > 0 {
			return true
		}
	}
	for _, ch := range closed {
		select {
		case <-ch:
			return true
		default:
		}
	}
	return false
}

// woken is the elector's close, from a callback's goroutine, of a channel
// only ever closed (Elector.closing): it closes it, and marks c awake if the
// wait it parked in ends on it, in one step under parkMu (see Parking).
func (el *election) woken(c *candidate, ch <-chan struct{}, close func()) {
	el.parkMu.Lock()
	defer el.parkMu.Unlock()
	close()
	if slices.Contains(c.closed, ch) {
		c.parked = false
	}
	c.woken.Add(1)
}

// wake marks c awake: something it waits for is due.
func (el *election) wake(c *candidate) {
	el.parkMu.Lock()
	defer el.parkMu.Unlock()
	c.parked = false
}

// signalled is the store's signal to one watch (locktest SignalAround):
// it sends it, and marks the candidate waiting on that watch awake, in
// one step under parkMu (see Parking).
func (el *election) signalled(watch <-chan struct{}, send func()) {
	el.parkMu.Lock()
	defer el.parkMu.Unlock()
	send()
	for _, c := range el.parking {
		if c.watch == watch {
			c.parked = false
		}
	}
}

// signal signals on a watch the test feeds (faultLock's watchOn), as the
// store signals its watches: the candidate waiting on it is marked awake
// in the same step (see Parking).
func (el *election) signal(watch chan struct{}) {
	el.signalled(watch, func() {
		select {
		case watch <- struct{}{}:
		default: // one pending already
		}
	})
}

// isParked reports whether c is parked now.
func (el *election) isParked(c *candidate) bool {
	el.parkMu.Lock()
	defer el.parkMu.Unlock()
	return c.parked
}

// parkingClock is the election's fake clock, seen by one candidate: a
// timer of the candidate's that fires marks it awake, within the clock
// step that fired it, so that settle waits for it to act (see Parking).
type parkingClock struct {
	*clocktesting.FakeClock
	el *election
	c  *candidate
}

func (p parkingClock) NewTimer(d time.Duration) clock.Timer {
	return p.FakeClock.AfterFunc(d, func() { p.el.wake(p.c) })
}

func (p parkingClock) AfterFunc(d time.Duration, f func()) clock.Timer {
	return p.FakeClock.AfterFunc(d, func() { p.el.wake(p.c); f() })
}

// start runs e for c.
func (el *election) start(c *candidate, e *Elector) {
	c.e = e
	var clk clock.WithDelayedExecution = parkingClock{el.clk, el, c}
	if sc, ok := e.clock.(*steppedClock); ok {
		sc.WithDelayedExecution = clk
		clk = sc
	}
	e.clock = clk
	e.park = func(p bool, watch <-chan struct{}, timers []<-chan time.Time, closed ...<-chan struct{}) {
		if f := c.onWake.Load(); f != nil && !p {
			(*f)()
		}
		el.park(c, p, watch, timers, closed...)
	}
	e.closing = func(ch <-chan struct{}, close func()) { el.woken(c, ch, close) }
	el.mu.Lock()
	el.cands = append(el.cands, c)
	el.mu.Unlock()
	el.parkMu.Lock()
	el.parking = append(el.parking, c)
	el.parkMu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		err := e.Run(ctx)
		c.exited.Store(true)
		c.done <- err
	}()
}

// settle waits until every running candidate is blocked with its timers
// armed and no change signal pending, so that the test can move the fake
// clock without racing an elector that is between reading the clock and
// arming a timer, or that has yet to act on a signal (see Parking).
func (el *election) settle(t *testing.T) {
	t.Helper()
	waitFor(t, "every candidate to settle", func() bool {
		el.parkMu.Lock()
		defer el.parkMu.Unlock()
		for _, c := range el.parking {
			if !c.exited.Load() && !c.parked {
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
func (el *election) failingLeader(t *testing.T, bmod func(*Config)) (a, b *candidate, fa *faultLock) {
	t.Helper()
	fa = &faultLock{Interface: el.store.Lock("a")}
	a = el.add("a", func(c *Config) { c.Lock = fa })
	waitFor(t, "a to lead", a.e.IsLeader)
	b = el.add("b", bmod)
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	return a, b, fa
}

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

// slowToWake makes c slow to wake, as on a loaded machine: from now until
// the test ends, it says it woke only once the parking machinery has
// marked it awake. A wake-up that the machinery does not mark as it
// becomes due would let settle see c parked meanwhile.
func (el *election) slowToWake(t *testing.T, c *candidate) {
	var done atomic.Bool
	t.Cleanup(func() { done.Store(true) })
	slow := func() {
		for !done.Load() && el.isParked(c) {
			time.Sleep(time.Millisecond)
		}
	}
	c.onWake.Store(&slow)
}

// settle waits for a candidate that a change signal woke, from the moment
// the signal is sent, however late the candidate runs. Before signals
// marked their receiver awake, settle saw slow b parked from the signal
// until b ran, and returned with a's renewal unread by b.
func TestSettleWaitsForACandidateASignalWoke(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	b := el.add("b", nil)
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	el.settle(t)
	el.slowToWake(t, b)
	el.step(t, testRetry) // a renews: the only thing that wakes b
	el.settle(t)
	if a.stopped.Load() != 0 || !a.e.IsLeader() {
		t.Fatal("a stopped leading")
	}
	if got, want := b.e.Status().Expiry, el.clk.Now().Add(testLease); !got.Equal(want) {
		t.Fatalf("after settling, b sees a's lease expire at %v, want %v: b had not read a's renewal", got, want)
	}
}

// settle waits for a candidate that the return of one of its callbacks
// woke, from the moment it returns. Here a steps down (its renewals fail)
// and waits for its function, then OnStoppedLeading, each of which
// returns in its own goroutine. Before those returns marked a awake,
// settle saw slow a parked on the first and returned before
// OnStoppedLeading was called. (settle does not wait for a callback that
// has yet to return: that is not the candidate's to do. So the test waits
// for the three closes that wake a, the term's loss and the two returns,
// and only then settles.)
func TestSettleWaitsForACandidateACallbackReturnWoke(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	el.settle(t)
	el.slowToWake(t, a)
	el.store.SetFault(func(string) error { return errInjected })
	for start := el.clk.Now(); a.e.IsLeader(); el.step(t, testRetry/4) {
		if el.clk.Since(start) > testLease {
			t.Fatalf("a still leads %v after its renewals began to fail", el.clk.Since(start))
		}
	}
	waitFor(t, "a's term to be lost and its function and OnStoppedLeading to return", func() bool { return a.woken.Load() == 3 })
	el.settle(t)
	if a.fnExited.Load() != 1 || a.stopped.Load() != 1 || !a.exited.Load() {
		t.Fatalf("after settling, a's function returned %d times, OnStoppedLeading %d times, Run returned: %v; want once, once, true", a.fnExited.Load(), a.stopped.Load(), a.exited.Load())
	}
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("Run = %v, want ErrLeaseLost", err)
	}
}
