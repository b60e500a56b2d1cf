package leaderelection

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/lock"
)

// Errors Run returns.
var (
	// ErrLeaseLost: this process led, and stopped because it could not
	// renew within RenewDeadline, another candidate holds the lock, or the
	// record was deleted.
	ErrLeaseLost = errors.New("leaderelection: lease lost")
	// ErrStopTimeout: the leader's function, or OnStoppedLeading, did not
	// return within StopTimeout after the term ended. The lock was not
	// released. After a lost lease the error matches ErrLeaseLost too.
	ErrStopTimeout = errors.New("leaderelection: leader function did not return in time")
)

type termKey struct{}

// TermFrom returns the term (fencing token) carried by a leader context:
// the record's LeaderTransitions when this process acquired the lock. It is
// strictly increasing per lock, so downstream stores can reject writes from
// an older term.
func TermFrom(ctx context.Context) (int64, bool) {
	t, ok := ctx.Value(termKey{}).(int64)
	return t, ok
}

// Elector campaigns for a lock and runs the leader's function while it holds
// it. Create one with NewElector; call Run once.
type Elector struct {
	c        Config
	clock    clock.WithDelayedExecution
	identity string
	desc     string
	leaseSec int

	mu        sync.Mutex
	seen      observation // what this candidate has seen of the lock
	announced string      // the holder last passed to OnNewLeader
	leading   bool
	term      int64
	lastRenew time.Time
	stopBy    time.Time // Run's context ended: callbacks may hold Run up until then

	// vitals is the elector's own health, for the watchdog, /readyz and
	// /status; it has its own lock.
	vitals vitals

	// claim is the claim this candidate wrote (nil: none); only the Run
	// goroutine uses it.
	claim *claim

	// changes is the lock's watch (nil: none, or it ended); only the Run
	// goroutine uses it.
	changes <-chan struct{}
	// corruptLogged and sharedLogged are when the campaign last logged a
	// corrupt record and a shared identity at full level: repeated
	// reports come at most once per repeatEvery. Run goroutine only.
	corruptLogged, sharedLogged time.Time

	leaders chan string // to the OnNewLeader goroutine
	ran     bool

	// park, if set (by tests), is called with true just before the elector
	// blocks waiting for a timer or signal, and with false when it wakes.
	park func(parked bool)
	// boot returns the time since boot including suspended time, if the
	// platform has such a clock (bootTime); tests replace it.
	boot func() (time.Duration, bool)
}

// repeatEvery is how often the campaign repeats a warning about a state
// that persists (a corrupt record, a shared identity) at full level; in
// between it logs at V(2).
const repeatEvery = time.Minute

// once reports whether a persisting condition last logged at *last is due
// to be logged at full level again, and if so stamps *last.
func (e *Elector) once(last *time.Time) bool {
	now := e.clock.Now()
	if !last.IsZero() && now.Sub(*last) < repeatEvery {
		return false
	}
	*last = now
	return true
}

func (e *Elector) parked(p bool) {
	if e.park != nil {
		e.park(p)
	}
}

// NewElector validates c and returns an elector.
func NewElector(c Config) (*Elector, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = c.LeaseDuration
	}
	if c.Name == "" {
		c.Name = c.Lock.Describe()
	}
	e := &Elector{
		c:        c,
		clock:    c.Clock,
		identity: c.Lock.Identity(),
		desc:     c.Lock.Describe(),
		leaseSec: int(math.Ceil(c.LeaseDuration.Seconds())),
		boot:     bootTime,
	}
	e.vitals = vitals{
		now:           func() time.Time { return e.clock.Now() }, // tests replace e.clock
		renewDeadline: c.RenewDeadline,
		stopTimeout:   c.StopTimeout,
		calls:         map[string]pendingCall{},
	}
	return e, nil
}

// IsLeader reports whether this process holds the lock now.
func (e *Elector) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

// GetLeader returns the last observed holder, or "" if none.
func (e *Elector) GetLeader() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.seen.rec.HolderIdentity
}

// Term returns the current term while leading, else the last term this
// process held (0 if it never led).
func (e *Elector) Term() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.term
}

// Status returns a snapshot of the elector's state.
func (e *Elector) Status() healthz.Status {
	s := e.vitals.status()
	e.mu.Lock()
	defer e.mu.Unlock()
	s.Name, s.Identity, s.Lock = e.c.Name, e.identity, e.desc
	s.Leading, s.Term, s.LastRenew = e.leading, e.term, e.lastRenew
	s.Leader, s.Transitions = e.seen.rec.HolderIdentity, int64(e.seen.rec.LeaderTransitions)
	s.LeaseDuration = e.c.LeaseDuration
	if !e.seen.at.IsZero() && e.seen.rec.HolderIdentity != "" {
		s.Expiry = e.seen.at.Add(e.recordLease(e.seen.rec))
		if !lock.IsClaim(e.seen.rec) {
			s.LeaderTerm = int64(e.seen.rec.LeaderTransitions)
		}
	}
	return s
}

// Run campaigns until ctx ends, leading whenever it holds the lock. It
// returns nil after ctx ends or the leader's function returns by itself,
// ErrLeaseLost (wrapped) after losing the lock (unless Config.Recampaign,
// which campaigns again), and ErrStopTimeout (wrapped) if the leader's
// function or OnStoppedLeading outlived StopTimeout; both after a lost
// lease whose function ignored its cancelled context. Callbacks hold up
// Run's return by at most StopTimeout after ctx ends (plus the release, one
// bounded store call; after a lost lease, a last look at the lock instead,
// see docs/elector.md, "A deleted record"). Run may be called once.
func (e *Elector) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.ran {
		e.mu.Unlock()
		return errors.New("leaderelection: Elector.Run called twice")
	}
	e.ran = true
	e.mu.Unlock()
	defer e.vitals.loopEnded()

	log := klog.FromContext(ctx)
	if e.c.Logger != nil {
		log = *e.c.Logger
	}
	log = log.WithValues("lock", e.desc, "identity", e.identity)

	if e.c.Callbacks.OnNewLeader != nil {
		e.leaders = make(chan string, 1)
		done := make(chan struct{})
		go e.deliverLeaders(done)
		defer func() { close(e.leaders); e.awaitLeaders(log, done) }()
	}
	stopAfter := context.AfterFunc(ctx, func() {
		stopBy := e.clock.Now().Add(e.c.StopTimeout)
		e.mu.Lock()
		e.stopBy = stopBy
		e.mu.Unlock()
	})
	defer stopAfter()

	if w, ok := e.c.Lock.(lock.Watcher); ok {
		watchCtx, stop := context.WithCancel(ctx)
		defer stop()
		e.changes = w.Changes(watchCtx)
	}

	for {
		t := e.campaign(ctx, log)
		if t == nil {
			return nil
		}
		again, err := t.run(ctx)
		if err != nil || !again {
			return err
		}
	}
}

// deliverLeaders calls OnNewLeader from one goroutine, with the newest
// holder, so that a slow callback never holds up the elector.
func (e *Elector) deliverLeaders(done chan<- struct{}) {
	defer close(done)
	for id := range e.leaders {
		end := e.vitals.callbackStarted("OnNewLeader", e.clock.Now().Add(e.c.StopTimeout))
		e.c.Callbacks.OnNewLeader(id)
		end()
	}
}

// awaitLeaders waits for OnNewLeader's last call, but not past StopTimeout
// after Run's context ended (or after now, if Run ends otherwise): a stuck
// callback must not keep Run from returning. It stays on the watchdog.
func (e *Elector) awaitLeaders(log logr.Logger, done <-chan struct{}) {
	now := e.clock.Now()
	e.mu.Lock()
	stopBy := e.stopBy
	e.mu.Unlock()
	if stopBy.IsZero() {
		stopBy = now.Add(e.c.StopTimeout)
	}
	t := e.newTimer(stopBy.Sub(now))
	defer t.Stop()
	e.vitals.beat(stopBy.Sub(now))
	e.parked(true)
	defer e.parked(false)
	select {
	case <-done:
	case <-t.C():
		log.Error(ErrStopTimeout, "OnNewLeader has not returned; Run returns without it", "stopTimeout", e.c.StopTimeout)
	}
}

// bootTime is the elector's view of boot time (see Elector.boot).
func (e *Elector) bootTime() (time.Duration, bool) {
	if e.boot == nil {
		return 0, false
	}
	return e.boot()
}

// attempt is when a write to the store started, on the elector's clock and
// on the boot clock (see Elector.boot), if the platform has one: a term is
// measured from the start of its last good write.
type attempt struct {
	start     time.Time
	boot      time.Duration
	bootKnown bool
}

func (e *Elector) startAttempt() attempt {
	a := attempt{start: e.clock.Now()}
	a.boot, a.bootKnown = e.bootTime()
	return a
}

// campaign returns the term once this process holds the lock, nil when ctx
// ends.
func (e *Elector) campaign(ctx context.Context, log logr.Logger) *term {
	log.Info("Campaigning for the lock")
	for {
		e.vitals.beat(0)
		next, t := e.tryAcquire(ctx, log, e.watching())
		if t != nil {
			return t
		}
		timer := e.newTimer(next)
		e.vitals.beat(next)
		e.parked(true)
		select {
		case <-ctx.Done():
			e.parked(false)
			timer.Stop()
			return nil
		case <-timer.C():
			e.parked(false)
		case _, open := <-e.changes:
			e.parked(false)
			timer.Stop()
			if !open {
				// The watch ended before Run did: poll from now on.
				log.Info("The lock's watch ended; polling every RetryPeriod")
				e.changes = nil
			}
		}
	}
}

// watching reports whether the lock's watch signals changes now.
func (e *Elector) watching() bool {
	if e.changes == nil {
		return false
	}
	if ws, ok := e.c.Lock.(lock.WatchState); ok {
		return ws.Watching()
	}
	return true
}

// pollDelay is how long a follower waits before reading again when nothing
// else will wake it: a watch that is down or has ended counts as none.
func (e *Elector) pollDelay(watching bool) time.Duration {
	if watching {
		// The watch wakes us; this read is only a safety net.
		return e.c.LeaseDuration
	}
	return wait.Jitter(e.c.RetryPeriod, JitterFactor)
}

// afterFunc runs f after d on the elector's clock, and at once if d is not
// positive (a fake clock would otherwise wait for its next step).
func (e *Elector) afterFunc(d time.Duration, f func()) clock.Timer {
	if d <= 0 {
		f()
		return firedTimer{}
	}
	return e.clock.AfterFunc(d, f)
}

// newTimer is clock.NewTimer that fires at once if d is not positive.
func (e *Elector) newTimer(d time.Duration) clock.Timer {
	if d <= 0 {
		t := firedTimer{c: make(chan time.Time, 1)}
		t.c <- e.clock.Now()
		return t
	}
	return e.clock.NewTimer(d)
}

// firedTimer is a timer that has already fired.
type firedTimer struct{ c chan time.Time }

func (t firedTimer) C() <-chan time.Time      { return t.c }
func (firedTimer) Stop() bool                 { return false }
func (firedTimer) Reset(d time.Duration) bool { panic("firedTimer.Reset") }

// attemptCtx bounds one store call: it ends at deadline on the elector's
// clock, and does not end with parent (so a stopping leader can still renew
// and release).
func (e *Elector) attemptCtx(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	t := e.afterFunc(d, cancel)
	return ctx, func() { t.Stop(); cancel() }
}

// tryAcquire reads the record and takes the lock if it is free or expired.
// It returns the term it acquired, or how long to wait before trying again.
func (e *Elector) tryAcquire(ctx context.Context, log logr.Logger, watching bool) (time.Duration, *term) {
	a := e.startAttempt()
	start := a.start
	actx, cancel := e.attemptCtx(ctx, e.c.RenewDeadline)
	defer cancel()
	if ctx.Err() != nil {
		return 0, nil
	}
	if e.claim != nil {
		return e.confirmClaim(ctx, actx, log, a)
	}
	rec, raw, err := e.c.Lock.Get(actx)
	next := lock.Record{
		HolderIdentity:       e.identity,
		LeaseDurationSeconds: e.leaseSec,
		AcquireTime:          metav1.NewTime(start),
		RenewTime:            metav1.NewTime(start),
	}
	var stand time.Duration // > 0: next is a claim, which must stand this long (see confirmClaim)
	switch {
	case lock.IsNotFound(err):
		// A record this candidate has seen may have been deleted under a
		// leader that is still working (an operator, a restored store).
		// Treat it as still there: wait out the lease last observed, and
		// continue its term count so the fencing token keeps increasing.
		// The disappearance itself counts as a change: a follower whose
		// view lagged (a read cache, a poll between an acquisition and
		// the deletion) may never have seen the current holder, so the
		// lease is also measured from the moment the record was first
		// found gone, whoever held it last. Any leader renewing before the
		// deletion steps down within RenewDeadline < LeaseDuration of it.
		// The record it then creates is a claim that must stand
		// RenewDeadline (confirmClaim): it may have missed terms.
		//
		// A candidate that never saw a record cannot tell a lock that
		// never existed from one deleted a moment ago (a process started,
		// or restarted, around an operator's deletion), nor know the term
		// count. It creates term 1 at once, as a claim that must stand
		// longer (freshClaim), so that a candidate that knew the count
		// reads it meanwhile and replaces it with the next term (see the
		// default case), and a leader still renewing replaces it with its
		// tombstone. Only a store that proves no record was ever written
		// (lock.ErrNeverWritten) gets a leader at once.
		now := e.clock.Now()
		e.mu.Lock()
		prev, seen := e.seen.rec, !e.seen.at.IsZero()
		last := max(int64(prev.LeaderTransitions), e.term, e.seen.maxTerm)
		neverWritten := !seen && errors.Is(err, lock.ErrNeverWritten)
		if e.seen.goneAt.IsZero() {
			e.seen.goneAt = now
		}
		e.seen.slowestGone = max(e.seen.slowestGone, now.Sub(start))
		var goneFor time.Duration
		switch {
		case seen:
			goneFor = e.seen.goneAt.Add(max(e.c.LeaseDuration, e.recordLease(prev))).Sub(now)
			stand = e.c.RenewDeadline
		case !neverWritten:
			stand = e.freshClaim(e.seen.slowestGone)
		}
		e.mu.Unlock()
		if held := max(e.heldFor(now), goneFor); held > 0 {
			log.V(2).Info("The lock's record is gone; waiting out the lease last observed", "holder", prev.HolderIdentity, "expiresIn", held)
			return min(held, e.pollDelay(watching)), nil
		}
		next.LeaderTransitions = int(last) + 1
		if stand > 0 {
			next = e.asClaim(next, stand)
		}
		err = e.c.Lock.Create(actx, next)
	case errors.Is(err, lock.ErrCorrupt):
		// Never overwritten: it may be a newer writer's format, or a
		// fault worth keeping for the post-mortem. /readyz fails (store)
		// on every candidate until an operator acts.
		e.vitals.storeFailed(err)
		msg := "The lock's record is corrupt; no candidate can lead until it is repaired. To recover, delete the record (a candidate takes over a lease later, continuing from the last term it saw)"
		if e.once(&e.corruptLogged) {
			log.Error(err, msg, "delete", e.desc, "repeatsEvery", repeatEvery)
		} else {
			log.V(2).Info(msg, "err", err, "delete", e.desc)
		}
		return wait.Jitter(e.c.RetryPeriod, JitterFactor), nil
	case err != nil:
		e.vitals.storeFailed(err)
		log.Error(err, "Reading the lock failed")
		return wait.Jitter(e.c.RetryPeriod, JitterFactor), nil
	default:
		e.vitals.storeOK()
		e.warnIfIdentityShared(log, *rec, raw)
		if until, replace := e.replacesClaim(*rec); replace {
			// A claim with a term this candidate has already seen: its
			// writer missed terms (it never saw the record, or missed a
			// term between two deletions), and must not lead with a
			// token a fencing store may have accepted. It does not lead
			// yet, so replace it (compare-and-swap on the version just
			// read) with this candidate's own claim for the next term;
			// the writer's confirmation then fails and it reads this one.
			// The new claim stands as long as this candidate would have
			// waited after finding the record gone.
			e.mu.Lock()
			last := e.seen.maxTerm
			e.mu.Unlock()
			next.LeaderTransitions = int(last) + 1
			stand = until.Sub(start)
			next = e.asClaim(next, stand)
			log.Info("Replacing a claim whose term this candidate has already seen", "holder", rec.HolderIdentity, "claimTerm", rec.LeaderTransitions, "term", next.LeaderTransitions)
			err = e.c.Lock.Update(actx, next)
			break
		}
		if e.observe(*rec, raw) && rec.HolderIdentity != "" && rec.HolderIdentity != e.identity {
			log.Info("New leader", "leader", rec.HolderIdentity, "term", rec.LeaderTransitions)
		}
		if held := e.heldFor(e.clock.Now()); held > 0 {
			// Held (by another, or by an earlier incarnation of this
			// identity, which may still be running), or just handed over
			// by this process. Wake at the exact expiry instant if nothing
			// else wakes us first.
			log.V(4).Info("Lock is held", "holder", rec.HolderIdentity, "expiresIn", held)
			return min(held, e.pollDelay(watching)), nil
		}
		// Continue from the highest term this process has seen, not only
		// the record's: a record recreated after a deletion by a
		// candidate that never saw the old one (possible when every
		// candidate that did was too slow to read its claim) restarted
		// the count, and the next term must still be above every term a
		// fencing store may have accepted.
		e.mu.Lock()
		last := max(int64(rec.LeaderTransitions), e.seen.maxTerm)
		e.mu.Unlock()
		next.LeaderTransitions = int(last) + 1
		err = e.c.Lock.Update(actx, next)
	}
	if err != nil {
		if lock.IsConflict(err) {
			log.V(2).Info("Lost the race for the lock", "err", err)
			return 0, nil // read again at once: someone else wrote
		}
		e.vitals.storeFailed(err)
		log.Error(err, "Acquiring the lock failed")
		return wait.Jitter(e.c.RetryPeriod, JitterFactor), nil
	}
	if stand > 0 {
		e.vitals.storeOK()
		// Measured from now, when the write has landed: not from start,
		// which may precede the deletion this claim follows.
		e.claim = &claim{rec: next, until: e.clock.Now().Add(stand)}
		log.Info("Claimed the lock; leading only if the claim still stands", "term", next.LeaderTransitions, "standsFor", stand)
		return stand, nil
	}
	return e.acquired(ctx, log, next, a)
}

// claim is a record this candidate wrote as a claim (see confirmClaim): it
// leads only if the claim still stands at until.
type claim struct {
	rec   lock.Record
	until time.Time
}

// asClaim turns next into a claim that must stand for stand: no
// AcquireTime, and a lease that covers the whole wait, so that no
// candidate that reads it takes it over as expired first.
func (e *Elector) asClaim(next lock.Record, stand time.Duration) lock.Record {
	next.AcquireTime = metav1.Time{}
	next.LeaseDurationSeconds = max(e.leaseSec, int(math.Ceil(stand.Seconds())))
	return next
}

// freshClaim is how long the claim of a candidate that never saw a record
// must stand, given its slowest read that found none: long enough for
// every other candidate to read it at least once. A candidate polls every
// RetryPeriod×(1+JitterFactor) at most (a watching one reads at once), and
// one that knew the term count waits LeaseDuration after finding the
// record gone; the store is taken to be as slow for them as for this one
// (three reads: theirs, a Create, and slack). RenewDeadline on top, as for
// any claim (confirmClaim).
func (e *Elector) freshClaim(slowestRead time.Duration) time.Duration {
	poll := time.Duration(float64(e.c.RetryPeriod) * (1 + JitterFactor))
	return e.c.RenewDeadline + max(e.c.LeaseDuration, poll) + 3*slowestRead
}

// replacesClaim reports whether rec, just read, is another candidate's
// claim with a term this candidate has already seen, and if so until when
// this candidate's own claim in its place must stand: as long as it would
// wait after finding the record gone (from when it first found it gone, or
// from now), and at least RenewDeadline.
func (e *Elector) replacesClaim(rec lock.Record) (time.Time, bool) {
	if !lock.IsClaim(rec) || rec.HolderIdentity == e.identity {
		return time.Time{}, false
	}
	now := e.clock.Now()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen.maxTerm == 0 || int64(rec.LeaderTransitions) > e.seen.maxTerm {
		return time.Time{}, false
	}
	from := now
	if !e.seen.goneAt.IsZero() {
		from = e.seen.goneAt
	}
	until := from.Add(max(e.c.LeaseDuration, e.recordLease(e.seen.rec)))
	return later(until, now.Add(e.c.RenewDeadline)), true
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// confirmClaim turns a claim into a lease once it has stood until
// claim.until: an Update from the claim's version, which fails if anyone
// wrote since, and which sets AcquireTime: from then on it is a lease.
//
// Why a claim. The term a candidate creates after a record vanished is
// the last one it saw + 1, but a candidate that polls or reads through a
// cache may have missed terms: when the record is deleted, recreated (a
// tombstone, then a new leader) and deleted again between two of its
// reads, all its reads find nothing, the wait from its first not-found
// runs out, and it creates a term that a leader it never saw holds now,
// before that leader's next renewal (within RetryPeriod) could put its
// tombstone back. A candidate that never saw a record at all creates term
// 1. Two leaders at once, or one fencing token twice. A leader whose
// renewal finds a record with a term not above its own replaces it with
// its tombstone (term.tombstone), and does so before its renewal deadline,
// which ends (RenewDeadline after its last good renewal started, before
// the deletion) before the claim has stood RenewDeadline; a candidate that
// reads a claim whose term it has already seen replaces it with its own
// claim for the next term (tryAcquire). So the claim stands only if no such
// leader is alive and reaching the store, and no candidate that knew a
// higher term read it meanwhile: then this candidate leads; else its
// Update fails, and it reads the record that replaced it and continues
// from its term.
func (e *Elector) confirmClaim(ctx, actx context.Context, log logr.Logger, a attempt) (time.Duration, *term) {
	start := a.start
	if wait := e.claim.until.Sub(start); wait > 0 {
		return wait, nil
	}
	next := e.claim.rec
	next.AcquireTime, next.RenewTime = metav1.NewTime(start), metav1.NewTime(start)
	next.LeaseDurationSeconds = e.leaseSec
	err := e.c.Lock.Update(actx, next)
	switch {
	case lock.IsConflict(err) || lock.IsNotFound(err):
		// Replaced (by the tombstone of a leader this candidate never
		// saw, or by a candidate that knew a higher term) or deleted
		// again: read what is there.
		e.claim = nil
		log.Info("The claim did not stand; reading the lock again", "term", next.LeaderTransitions, "err", err)
		return 0, nil
	case err != nil:
		// Keep the claim: the next try is again a compare-and-swap on its
		// version, and fails if this write landed after all.
		e.vitals.storeFailed(err)
		log.Error(err, "Confirming the claim failed")
		return wait.Jitter(e.c.RetryPeriod, JitterFactor), nil
	}
	e.claim = nil
	return e.acquired(ctx, log, next, a)
}

// acquired completes an acquisition of next whose write, begun as a, has
// succeeded, and returns the term: the elector leads, unless Run's context
// has ended or the acquisition took RenewDeadline or more (nil).
func (e *Elector) acquired(ctx context.Context, log logr.Logger, next lock.Record, a attempt) (time.Duration, *term) {
	e.vitals.storeOK()
	if ctx.Err() != nil {
		// Acquired just as we were told to stop: give it back so nobody
		// waits out a lease nobody uses.
		e.observe(next, nil)
		e.mu.Lock()
		e.term = int64(next.LeaderTransitions)
		e.mu.Unlock()
		if e.c.ReleaseOnCancel {
			(&term{e: e, log: log, n: int64(next.LeaderTransitions)}).release(ctx)
		}
		return 0, nil
	}
	e.observe(next, nil)
	now := e.clock.Now()
	if took := now.Sub(a.start); took >= e.c.RenewDeadline {
		// The lease is already as old as a leader may hold one without
		// renewing: starting the function now would run it past the
		// point where followers may take over. Wait it out instead.
		log.Info("Acquiring the lock took longer than RenewDeadline; not leading this term", "took", took, "renewDeadline", e.c.RenewDeadline)
		return 0, nil
	}
	e.mu.Lock()
	e.leading, e.term, e.lastRenew = true, int64(next.LeaderTransitions), now
	e.seen.maxTerm = max(e.seen.maxTerm, e.term)
	e.mu.Unlock()
	log.Info("Acquired the lock", "term", next.LeaderTransitions)
	e.c.Lock.RecordEvent("became leader")
	return 0, e.newTerm(ctx, log, next, a)
}
