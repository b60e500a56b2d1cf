package leaderelection

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

	"github.com/b3df926d/leaderelection/internal/renewtime"
	"github.com/b3df926d/leaderelection/lock"
)

// stopCause says why a term ends.
type stopCause int

const (
	causeNone       stopCause = iota
	causeCancelled            // Run's context ended
	causeTermLimit            // TermLimit reached
	causeFuncReturn           // the leader's function returned by itself
	causeLost                 // the lease was lost
)

func (c stopCause) String() string {
	switch c {
	case causeCancelled:
		return "context cancelled"
	case causeTermLimit:
		return "term limit"
	case causeFuncReturn:
		return "function returned"
	case causeLost:
		return "lease lost"
	}
	return "none"
}

// wake is what woke a term's loop.
type wake int

const (
	wokeLost            wake = iota // the term was stepped down
	wokeCancelled                   // Run's context ended
	wokeTermLimit                   // TermLimit reached
	wokeFuncReturned                // the leader's function returned
	wokeStopped                     // OnStoppedLeading returned
	wokeStopTimeout                 // StopTimeout passed since the end began
	wokeRenew                       // time to renew
	wokePaused                      // the lease lapsed, and Recover keeps the function running
	wokeRecoverDeadline             // RecoverDeadline passed since the last good renewal's start
)

// term is one period of leadership, from the acquisition to the release.
// Its methods are the verbs of leading. Only the Run goroutine calls them,
// except stepDown, which the step-down timer also calls.
type term struct {
	e   *Elector
	log logr.Logger
	n   int64
	rec lock.Record // what every renewal writes

	ctx    context.Context // the leader's context, carrying the term
	cancel context.CancelFunc
	fnDone chan struct{} // closed when OnStartedLeading has returned
	ran    bool          // OnStartedLeading was started

	good     attempt     // the last successful acquire or renew
	deadline clock.Timer // steps down (or pauses) at good.start + RenewDeadline
	// leaseFrom is good.start as the step-down timer knows it (under
	// e.mu), so that a timer armed for an older renewal does nothing.
	leaseFrom time.Time
	paused    chan struct{} // signalled by pause (Recover)
	lost      chan struct{} // closed by stepDown
	lostOnce  sync.Once
	buried    bool // this term's tombstone is in the store (see tombstone)
	// lastErr is the last renewal's error (nil once one succeeds): the
	// reason given when the step-down timer ends the term. Run goroutine
	// only.
	lastErr error
	// why is the reason for a step-down decided by the Run goroutine
	// (a conflict, a deleted record, a suspension), logged with it.
	why string
}

// newTerm describes the term this process has just acquired by writing
// rec, begun as a.
func (e *Elector) newTerm(ctx context.Context, log logr.Logger, rec lock.Record, a attempt) *term {
	n := int64(rec.LeaderTransitions)
	t := &term{
		e:      e,
		log:    log.WithValues("term", n),
		n:      n,
		rec:    rec, // renewals write it again, with a new RenewTime
		fnDone: make(chan struct{}),
		good:   a,
		lost:   make(chan struct{}),
		paused: make(chan struct{}, 1),
	}
	t.ctx, t.cancel = context.WithCancel(context.WithValue(ctx, termKey{}, n))
	return t
}

// start arms the step-down timer, then starts the leader's function, unless
// the lease is already too old to start it.
func (t *term) start() {
	// The step-down timer fires RenewDeadline after the start of the last
	// good renewal, independently of the renew loop, so the leader's
	// context is cancelled (with Recover: the gate closed) on time even if
	// a store call hangs.
	t.armDeadline()
	if t.isLost() {
		close(t.fnDone)
		return
	}
	t.openGate()
	t.ran = true
	end := t.e.vitals.callbackStarted("OnStartedLeading", time.Time{}) // no bound until cancelled
	go func() {
		defer t.e.closeWaking(t.fnDone)
		defer end()
		t.e.c.Callbacks.OnStartedLeading(t.ctx)
	}()
}

// stepDown ends leadership at once: not leading, the leader's context
// cancelled. The term is lost; it is safe to call more than once and from
// any goroutine.
func (t *term) stepDown() {
	t.lostOnce.Do(func() {
		t.e.mu.Lock()
		t.e.leading, t.e.recovering = false, false
		t.e.closeGate()
		t.e.mu.Unlock()
		// Mark the term lost before cancelling, so that the function's
		// return is never mistaken for a voluntary end.
		t.e.closeWaking(t.lost)
		t.cancel()
	})
}

// openGate opens Config.Gate for this term, with the leader's context,
// if this process still leads: under the elector's lock, as stepDown
// closes it, so that a step-down racing the start cannot leave the gate
// open.
func (t *term) openGate() {
	e := t.e
	if e.c.Gate == nil {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.leading {
		e.c.Gate.Open(t.ctx, t.n)
	}
}

// closeGate closes Config.Gate, if set. Callers hold e.mu.
func (e *Elector) closeGate() {
	if e.c.Gate != nil {
		e.c.Gate.Close()
	}
}

// stepDownFor is stepDown for a reason the Run goroutine decided, which
// logStepDown gives.
func (t *term) stepDownFor(why string) {
	t.why = why
	t.stepDown()
}

// logStepDown says why the term ended: the reason the Run goroutine
// decided, or, when the step-down timer fired, the last renewal's error
// (a corrupt record also names the object to delete).
func (t *term) logStepDown() {
	e := t.e
	switch {
	case t.why != "":
		t.log.Info("Stepped down", "reason", t.why)
	case errors.Is(t.lastErr, lock.ErrCorrupt):
		t.log.Error(t.lastErr, "Stepped down: the lock's record is corrupt; delete it to let a candidate lead", "reason", "corrupt record", "delete", e.desc, "renewDeadline", e.c.RenewDeadline)
	case t.lastErr != nil:
		t.log.Info("Stepped down: no renewal succeeded within RenewDeadline", "reason", "renewal failed", "lastError", t.lastErr.Error(), "renewDeadline", e.c.RenewDeadline)
	default:
		t.log.Info("Stepped down: no renewal completed within RenewDeadline (the store did not answer in time)", "reason", "renewal timed out", "renewDeadline", e.c.RenewDeadline)
	}
}

// lostErr is Run's error after a lost term: ErrLeaseLost with the reason
// logStepDown gave. A corrupt record also wraps lock.ErrCorrupt and names
// the object to delete; other store errors are quoted, not wrapped, so
// that the error does not match them (a renewal's context.DeadlineExceeded
// is not Run's).
func (t *term) lostErr() error {
	e := t.e
	switch {
	case t.why != "":
		return fmt.Errorf("%s: %w: %s", e.desc, ErrLeaseLost, t.why)
	case errors.Is(t.lastErr, lock.ErrCorrupt):
		return fmt.Errorf("%s: %w: the record is corrupt; delete %s to let a candidate lead: %w", e.desc, ErrLeaseLost, e.desc, t.lastErr)
	case t.lastErr != nil:
		return fmt.Errorf("%s: %w: no renewal succeeded within RenewDeadline (%v): %v", e.desc, ErrLeaseLost, e.c.RenewDeadline, t.lastErr)
	}
	return fmt.Errorf("%s: %w: no renewal completed within RenewDeadline (%v)", e.desc, ErrLeaseLost, e.c.RenewDeadline)
}

func (t *term) isLost() bool {
	select {
	case <-t.lost:
		return true
	default:
		return false
	}
}

// suspended reports whether boot time, which keeps counting while the host
// is suspended (unlike the monotonic clock Go's timers use), shows that
// RenewDeadline has passed since the last good renewal started.
func (t *term) suspended() bool {
	now, ok := t.e.bootTime()
	return ok && t.good.bootKnown && now-t.good.boot >= t.e.c.RenewDeadline
}

// renew writes the record from the version this elector last wrote, and
// re-arms the step-down timer on success. On a conflict it reads the
// record: if it is still this term's (an earlier write landed after its
// caller gave up on it), it renews from the fresh version. If it holds a
// term that is not above this one, the record was deleted and recreated
// by a candidate that never saw this term (it polls, or reads through a
// cache, and missed it): renew reports the conflict and returns that
// record, the usurper (as the lock encoded it, raw), and the caller puts
// this term back in its place (tombstone), so that the count goes on from
// this term. Terms only increase, so no record a candidate wrote after
// reading this term can carry a term this low.
func (t *term) renew(ctx context.Context) (usurper *lock.Record, raw []byte, err error) {
	e := t.e
	a := e.startAttempt()
	start := a.start
	t.rec.RenewTime = renewtime.Next(start, t.rec.RenewTime)
	actx, cancel := e.attemptCtx(ctx, t.renewBound())
	defer cancel()
	err = e.c.Lock.Update(actx, t.rec)
	if lock.IsConflict(err) {
		cur, curRaw, gerr := e.c.Lock.Get(actx)
		switch {
		case gerr != nil:
			err = gerr
		case cur.HolderIdentity == e.identity && int64(cur.LeaderTransitions) == t.n:
			err = e.c.Lock.Update(actx, t.rec)
		case int64(cur.LeaderTransitions) <= t.n:
			usurper, raw = cur, curRaw
		default:
			e.observe(*cur, curRaw)
		}
	}
	took := e.clock.Since(start)
	if e.c.Metrics != nil {
		e.c.Metrics.ObserveRenew(e.c.Name, took, err)
	}
	if err != nil {
		if !lock.IsConflict(err) && !lock.IsNotFound(err) {
			e.vitals.storeFailed(err)
		}
		t.log.V(2).Info("Renewal failed", "err", err, "took", took)
		t.lastErr = err
		return usurper, raw, err
	}
	t.lastErr = nil
	e.vitals.storeOK()
	if t.isLost() {
		return nil, nil, nil // a late success does not undo a step-down
	}
	e.observe(t.rec, nil)
	now := e.clock.Now()
	e.mu.Lock()
	e.lastRenew = now
	e.mu.Unlock()
	t.good = a
	t.deadline.Stop()
	t.armDeadline()
	return nil, nil, nil
}

// release writes an empty holder, keeping the term, so that followers take
// over at once. It is only called once the leader's function and
// OnStoppedLeading have returned. Like renew and tombstone, it replaces a
// record whose term is not above this one.
func (t *term) release(ctx context.Context) {
	e := t.e
	actx, cancel := e.attemptCtx(ctx, e.c.RenewDeadline)
	defer cancel()
	now := metav1.NewTime(e.clock.Now())
	rec := lock.Record{LeaseDurationSeconds: 1, AcquireTime: now, RenewTime: now, LeaderTransitions: int(t.n)}
	err := e.c.Lock.Update(actx, rec)
	if lock.IsConflict(err) {
		var cur *lock.Record
		if cur, _, err = e.c.Lock.Get(actx); err == nil {
			ours := cur.HolderIdentity == e.identity && int64(cur.LeaderTransitions) == t.n
			if !ours && int64(cur.LeaderTransitions) > t.n {
				t.log.Info("Not releasing: the lock has moved on", "holder", cur.HolderIdentity)
				return
			}
			if !ours {
				// Recreated after a deletion by a candidate that never
				// saw this term (see tombstone): the released record
				// replaces it, so that the count goes on from this term.
				t.log.Info("Releasing over a record with a term not above this one", "holder", cur.HolderIdentity, "recordTerm", cur.LeaderTransitions)
			}
			err = e.c.Lock.Update(actx, rec)
		}
	}
	if err != nil {
		t.log.Error(err, "Releasing the lock failed; followers take over when it expires")
		return
	}
	e.observe(rec, nil)
	t.log.Info("Released the lock")
}

// callOnStopped records the end of the term on the lock and calls
// OnStoppedLeading in its own goroutine; the returned channel is closed
// when it has returned.
func (t *term) callOnStopped(due time.Time) <-chan struct{} {
	done := make(chan struct{})
	if !t.ran {
		close(done) // OnStoppedLeading only ever follows OnStartedLeading
		return done
	}
	t.e.c.Lock.RecordEvent("stopped leading")
	if t.e.c.Callbacks.OnStoppedLeading == nil {
		close(done)
		return done
	}
	end := t.e.vitals.callbackStarted("OnStoppedLeading", due)
	go func() {
		defer t.e.closeWaking(done)
		defer end()
		t.e.c.Callbacks.OnStoppedLeading()
	}()
	return done
}

// run runs the leader's function and renews until the term ends. It
// returns again=true when the elector should campaign again: after a
// term-limit hand-over, or a lost term with Recampaign set.
//
// The end of a term, whatever its cause, goes: cancel the function and
// wait for it; call OnStoppedLeading and wait for it; release (if the term
// was not lost). Both waits share one deadline, StopTimeout after the end
// began, and the leader keeps renewing through both, so nobody else starts
// while either runs.
func (t *term) run(ctx context.Context) (again bool, err error) {
	e := t.e
	t.start()
	defer func() { t.deadline.Stop(); t.cancel() }()

	renewTimer := e.clock.NewTimer(max(e.c.RetryPeriod-e.clock.Since(t.good.start), time.Nanosecond))
	defer renewTimer.Stop()
	renewC := renewTimer.C()
	var termC <-chan time.Time
	if e.c.TermLimit > 0 {
		termTimer := e.newTimer(e.c.TermLimit - e.clock.Since(t.rec.AcquireTime.Time))
		defer termTimer.Stop()
		termC = termTimer.C()
	}
	var stopTimer clock.Timer
	var stopC <-chan time.Time
	var stopDue time.Time
	var recoverTimer clock.Timer // armed while recovering
	var recoverC <-chan time.Time
	var pausedAt time.Time
	stopRecovery := func() {
		if recoverTimer != nil {
			recoverTimer.Stop()
		}
		recoverTimer, recoverC = nil, nil
	}
	defer func() {
		if stopTimer != nil {
			stopTimer.Stop()
		}
		stopRecovery()
	}()
	ctxDone, lostC, fnDone := ctx.Done(), (<-chan struct{})(t.lost), (<-chan struct{})(t.fnDone)
	var stoppedDone <-chan struct{}
	cause := causeNone
	lost := false

	// end is the one place the end of the term begins, whatever its
	// cause: the function's context is cancelled and the stop deadline
	// armed, once. A loss (the step-down timer, a conflict, a deleted
	// record) also ends the renewals, even when the term was already
	// ending for another cause, whose deadline then stands.
	end := func(c stopCause) {
		if c == causeLost {
			if lost {
				return
			}
			lostC, renewC, lost = nil, nil, true
			renewTimer.Stop()
			t.deadline.Stop() // stepped down already: nothing left for it to do
			t.logStepDown()
		}
		if cause != causeNone {
			return
		}
		cause = c
		e.mu.Lock()
		e.closeGate() // at once, not when the context's AfterFunc runs
		e.mu.Unlock()
		t.cancel()
		stopDue = e.clock.Now().Add(e.c.StopTimeout)
		stopTimer = e.clock.NewTimer(e.c.StopTimeout)
		stopC = stopTimer.C()
		e.vitals.callbackDue("OnStartedLeading", stopDue)
		if c != causeLost {
			t.log.Info("Stopping the leader's function", "cause", c.String())
		}
	}

	for {
		wait := e.c.RetryPeriod // the renew timer
		if renewC == nil {
			wait = e.c.StopTimeout // the stop timer
		}
		e.vitals.beat(wait)
		e.parkedOn(t.paused, []<-chan time.Time{renewC, termC, stopC, recoverC}, lostC, fnDone, stoppedDone)
		var w wake
		select {
		case <-lostC:
			w = wokeLost
		case <-ctxDone:
			w, ctxDone = wokeCancelled, nil
		case <-termC:
			w, termC = wokeTermLimit, nil
		case <-fnDone:
			w, fnDone = wokeFuncReturned, nil
		case <-stoppedDone:
			w = wokeStopped
		case <-stopC:
			w = wokeStopTimeout
		case <-renewC:
			w = wokeRenew
		case <-t.paused:
			w = wokePaused
		case <-recoverC:
			w = wokeRecoverDeadline
		}
		e.parked(false)
		switch {
		case w == wokeRenew:
			// Never once a loss is noted (renewC is nil then); a renewal
			// that came due with a step-down may still run, and does not
			// undo it (see renew).
			if next := t.renewOrStepDown(ctx); next > 0 {
				renewTimer.Reset(next)
			}
			if recoverC != nil && !t.isRecovering() && !t.isLost() {
				stopRecovery()
				t.log.Info("Renewed again in the same term (nobody took over): leading again, the write gate open", "recoveredAfter", e.clock.Since(pausedAt))
			}
			continue
		case w == wokePaused && !lost && t.isRecovering():
			if recoverC == nil {
				pausedAt = e.clock.Now()
				recoverTimer = e.newTimer(e.c.RecoverDeadline - e.clock.Since(t.good.start))
				recoverC = recoverTimer.C()
			}
			t.logPause()
			continue
		case w == wokePaused:
			continue
		case w == wokeRecoverDeadline:
			recoverTimer, recoverC = nil, nil
			if t.isRecovering() {
				t.giveUp()
			}
		}
		// A step-down (by the timer, a conflict, a deleted record) is
		// handled before anything else that woke the loop at the same time.
		if t.isLost() {
			end(causeLost)
		}
		switch w {
		case wokeCancelled:
			end(causeCancelled)
		case wokeTermLimit:
			end(causeTermLimit)
		case wokeFuncReturned:
			if cause == causeNone {
				t.log.Info("The leader's function returned")
				end(causeFuncReturn)
			}
			e.mu.Lock()
			e.leading = false // the work has stopped; the lock is still held
			e.mu.Unlock()
			stoppedDone = t.callOnStopped(stopDue)
		case wokeStopped:
			stopTimer.Stop()
			return t.finish(ctx, cause, lost)
		case wokeStopTimeout:
			t.stepDown()
			return t.overrun(ctx, lost, fnDone == nil)
		}
		if !lost && !t.isRecovering() {
			t.stepDownIfSuspended()
		}
	}
}

// stepDownIfSuspended steps down if the host was suspended past
// RenewDeadline (see suspended), and reports whether it did. When
// RenewDeadline has passed on the monotonic clock too, this is no
// suspension but the step-down timer's own instant, which the renew timer
// can share (RenewDeadline a multiple of RetryPeriod, as at 15s/10s/2s,
// with renewals failing fast) and reach first: it then does what that
// timer does, so that with Recover the leader pauses instead of ending
// its term, and without it the step-down gives the renewal's reason.
func (t *term) stepDownIfSuspended() bool {
	if !t.suspended() {
		return false
	}
	e := t.e
	if e.clock.Since(t.good.start) >= e.c.RenewDeadline {
		e.mu.Lock()
		from := t.leaseFrom
		e.mu.Unlock()
		t.lapse(from)
		return !e.c.Recover
	}
	t.log.Info("The host was suspended past RenewDeadline; stepping down")
	t.stepDownFor("the host was suspended past RenewDeadline")
	return true
}

// renewOrStepDown renews, unless the host was suspended past
// RenewDeadline, and steps down when the renewal shows the term is over
// (a conflict, a deleted record: see renew and tombstone). It returns when
// to renew next; not positive: not again.
func (t *term) renewOrStepDown(ctx context.Context) time.Duration {
	e := t.e
	if !t.isRecovering() && t.stepDownIfSuspended() {
		return 0
	}
	usurper, raw, err := t.renew(ctx)
	switch {
	case err == nil && !t.isLost():
		t.resume(t.good.start)
		return max(e.c.RetryPeriod-e.clock.Since(t.good.start), time.Nanosecond)
	case lock.IsConflict(err) && usurper != nil:
		// The record was deleted and recreated with a term not above
		// this one: put this term back in its place (see tombstone),
		// after stopping the work.
		t.log.Info("The lock's record was recreated with a term not above this one", "err", err)
		t.stepDownFor("the record was recreated with a term not above this one")
		t.tombstone(ctx, usurper, raw) // tells the watchdog how long it may take
	case lock.IsConflict(err):
		t.log.Info("Another candidate holds the lock", "err", err)
		t.stepDownFor("another candidate holds the lock")
	case lock.IsNotFound(err):
		// The record was deleted: followers that saw it wait out its
		// lease, but this term's lock is gone. Stop the work first, then
		// leave this term in the store at once (see tombstone for the
		// order). Also when the step-down timer fired while this renewal
		// ran: the tombstone has until LeaseDuration after the last good
		// renewal (see putBack).
		t.log.Info("The lock's record is gone", "err", err)
		t.stepDownFor("the record was deleted")
		t.tombstone(ctx, nil, nil) // tells the watchdog how long it may take
	case t.isLost():
	default:
		return e.c.RetryPeriod
	}
	return 0
}

// finish completes a term whose function and OnStoppedLeading have
// returned in time: it releases the lock (after a term limit, or with
// ReleaseOnCancel; a lost term only its tombstone), and says whether to
// campaign again.
func (t *term) finish(ctx context.Context, cause stopCause, lost bool) (again bool, err error) {
	e := t.e
	if lost && t.buried && e.c.ReleaseOnCancel {
		// The function and OnStoppedLeading have returned: the
		// tombstone need not keep anyone waiting any more.
		e.vitals.beat(0)
		t.release(ctx)
	}
	if lost {
		if e.c.Recampaign {
			t.log.Info("Campaigning again (Recampaign)")
			return true, nil
		}
		e.vitals.beat(0)
		t.lastLook(ctx)
		return false, t.lostErr()
	}
	t.stepDown()
	if cause == causeTermLimit || e.c.ReleaseOnCancel {
		e.vitals.beat(0)
		t.release(ctx)
	}
	if cause == causeTermLimit {
		// Leave the free lock to the others until one of them has taken
		// it, or for one LeaseDuration: followers that poll, or whose
		// reads are cached, see the release late.
		holdOff := e.clock.Now().Add(e.c.LeaseDuration)
		e.mu.Lock()
		e.seen.holdOff = holdOff
		e.mu.Unlock()
		return true, nil
	}
	return false, nil
}

// overrun ends a term whose function (or, once it returned,
// OnStoppedLeading) is still running StopTimeout after the end began: the
// lock is left to expire, and Run returns ErrStopTimeout.
func (t *term) overrun(ctx context.Context, lost, fnReturned bool) (again bool, err error) {
	e := t.e
	what := "the leader's function"
	if fnReturned {
		what = "OnStoppedLeading"
	}
	if lost {
		t.log.Error(ErrStopTimeout, "Still running after losing the lock", "callback", what, "stopTimeout", e.c.StopTimeout)
		e.vitals.beat(0)
		t.lastLook(ctx)
		return false, fmt.Errorf("%w, and %w: %s still runs (after %v)", t.lostErr(), ErrStopTimeout, what, e.c.StopTimeout)
	}
	t.log.Error(ErrStopTimeout, "Leaving the lock to expire", "callback", what, "stopTimeout", e.c.StopTimeout)
	if !fnReturned {
		// Called, as documented, once StopTimeout has passed, but not
		// awaited: Run returns now.
		t.callOnStopped(time.Time{})
	}
	return false, fmt.Errorf("%s: %w: %s still runs (after %v)", e.desc, ErrStopTimeout, what, e.c.StopTimeout)
}
