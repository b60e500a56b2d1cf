package leaderelection

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"

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

	acquiredAt time.Time

	goodStart time.Time     // start of the last successful acquire or renew
	bootStart time.Duration // boot time then (see Elector.boot) ...
	bootKnown bool          // ... if the platform has it
	deadline  clock.Timer   // steps down at goodStart + RenewDeadline
	lost      chan struct{} // closed by stepDown
	lostOnce  sync.Once
	buried    bool // this term's tombstone is in the store (see tombstone)
	// usurped: a renewal found, in place of this term's record, one whose
	// term is not above this one: written after a deletion by a candidate
	// that never saw this term (see renew). The tombstone replaces it.
	usurped bool
}

// newTerm describes the term this process has just acquired.
func (e *Elector) newTerm(ctx context.Context, log logr.Logger) *term {
	e.mu.Lock()
	n, acquiredAt, goodStart := e.term, e.acquiredAt, e.lastGoodStart
	e.mu.Unlock()
	t := &term{
		e:   e,
		log: log.WithValues("term", n),
		n:   n,
		rec: lock.Record{
			HolderIdentity:       e.identity,
			LeaseDurationSeconds: e.leaseSec,
			AcquireTime:          metav1.NewTime(acquiredAt),
			RenewTime:            metav1.NewTime(acquiredAt), // as the acquisition wrote it
			LeaderTransitions:    int(n),
		},
		fnDone:     make(chan struct{}),
		acquiredAt: acquiredAt,
		goodStart:  goodStart,
		bootStart:  e.bootAtAcquire,
		bootKnown:  e.bootKnown,
		lost:       make(chan struct{}),
	}
	t.ctx, t.cancel = context.WithCancel(context.WithValue(ctx, termKey{}, n))
	return t
}

// start arms the step-down timer, then starts the leader's function, unless
// the lease is already too old to start it.
func (t *term) start() {
	// The step-down timer fires RenewDeadline after the start of the last
	// good renewal, independently of the renew loop, so the leader's
	// context is cancelled on time even if a store call hangs.
	t.deadline = t.e.afterFunc(t.e.c.RenewDeadline-t.e.clock.Since(t.goodStart), t.stepDown)
	if t.isLost() {
		close(t.fnDone)
		return
	}
	t.ran = true
	end := t.e.callbackStarted("OnStartedLeading", time.Time{}) // no bound until cancelled
	go func() {
		defer close(t.fnDone)
		defer end()
		t.e.c.Callbacks.OnStartedLeading(t.ctx)
	}()
}

// close stops the term's timers and cancels the leader's context.
func (t *term) close() {
	t.deadline.Stop()
	t.cancel()
}

// stepDown ends leadership at once: not leading, the leader's context
// cancelled. The term is lost; it is safe to call more than once and from
// any goroutine.
func (t *term) stepDown() {
	t.lostOnce.Do(func() {
		t.e.mu.Lock()
		t.e.leading = false
		t.e.mu.Unlock()
		// Mark the term lost before cancelling, so that the function's
		// return is never mistaken for a voluntary end.
		close(t.lost)
		t.cancel()
	})
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
	return ok && t.bootKnown && now-t.bootStart >= t.e.c.RenewDeadline
}

// renewTime is the RenewTime a renewal starting at now writes after one
// that wrote prev: now, unless the wall clock was stepped back so far that
// the record (which stores whole seconds) would not change. Followers only
// see a renewal that changes the record; an unchanged one would make them
// measure the lease from an earlier renewal. So within a term RenewTime
// strictly increases, whatever the wall clock does; nothing compares it
// with another clock.
func renewTime(now time.Time, prev metav1.Time) metav1.Time {
	if !prev.IsZero() && now.Unix() <= prev.Unix() {
		return metav1.NewTime(prev.Truncate(time.Second).Add(time.Second))
	}
	return metav1.NewTime(now)
}

// renew writes the record from the version this elector last wrote, and
// re-arms the step-down timer on success. On a conflict it reads the
// record: if it is still this term's (an earlier write landed after its
// caller gave up on it), it renews from the fresh version. If it holds a
// term that is not above this one, the record was deleted and recreated
// by a candidate that never saw this term (it polls, or reads through a
// cache, and missed it): renew reports the conflict with usurped set, and
// the caller puts this term back in its place (tombstone), so that the
// count goes on from this term. Terms only increase, so no record a
// candidate wrote after reading this term can carry a term this low.
func (t *term) renew(ctx context.Context) error {
	e := t.e
	start := e.clock.Now()
	boot, bootKnown := e.bootTime()
	t.rec.RenewTime = renewTime(start, t.rec.RenewTime)
	actx, cancel := e.attemptCtx(ctx, e.c.RenewDeadline-e.clock.Since(t.goodStart))
	defer cancel()
	err := e.c.Lock.Update(actx, t.rec)
	if lock.IsConflict(err) {
		cur, raw, gerr := e.c.Lock.Get(actx)
		switch {
		case gerr != nil:
			err = gerr
		case cur.HolderIdentity == e.identity && int64(cur.LeaderTransitions) == t.n:
			err = e.c.Lock.Update(actx, t.rec)
		case int64(cur.LeaderTransitions) <= t.n:
			t.usurped = true
		default:
			e.observe(*cur, raw)
		}
	}
	took := e.clock.Since(start)
	if e.c.Metrics != nil {
		e.c.Metrics.ObserveRenew(e.c.Name, took, err)
	}
	if err != nil {
		if !lock.IsConflict(err) && !lock.IsNotFound(err) {
			e.storeFailed(err)
		}
		t.log.V(2).Info("Renewal failed", "err", err, "took", took)
		return err
	}
	e.storeOK()
	if t.isLost() {
		return nil // a late success does not undo a step-down
	}
	e.observe(t.rec, nil)
	now := e.clock.Now()
	e.mu.Lock()
	e.lastRenew = now
	e.mu.Unlock()
	t.goodStart, t.bootStart, t.bootKnown = start, boot, bootKnown
	t.deadline.Stop()
	t.deadline = e.afterFunc(e.c.RenewDeadline-e.clock.Since(start), t.stepDown)
	return nil
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

// tombstone recreates the record a renewal of this term found deleted,
// still naming this term and its holder, so that no later term reuses this
// one. A candidate whose view lagged (it polls, reads through a cache, or
// a coalesced watch signal showed it only the deletion) may never have read
// this term; without the tombstone it would wait out the deletion and
// create "the last term it saw + 1", this very term, and a fencing sink
// could not tell this leader's late writes from the next one's. Reading the
// tombstone, it continues from this term + 1 instead.
//
// Ordering. The caller has already stepped down (the leader's context is
// cancelled), and calls this at once, without waiting for the leader's
// function or OnStoppedLeading: the tombstone must be in the store before
// any candidate ends its wait, a whole LeaseDuration after it first found
// the record gone. It is a held record (this holder, a full lease), not a
// released one, so it invites nobody while the function winds down:
// candidates that read it wait a whole lease from then, as for any lost
// lease; lead releases it once the function and OnStoppedLeading have
// returned (with ReleaseOnCancel). It is a Create, which only succeeds if
// no record exists: it never overwrites a record another candidate wrote
// after reading this term. And it must land no later than this term's
// renewal deadline (goodStart + RenewDeadline, before any candidate can
// create after the deletion): a tombstone landing after a newer term was
// created and deleted again would take the term count backwards. So it
// gets only what is left of that window, and none once the step-down
// timer has fired.
//
// A record already there whose term is not above this one (the renewal
// found it: usurped; or it beat the Create) was written by a candidate
// that never read this term: a follower whose reads all fell while the
// record was gone, so it missed this term's acquisition between two
// deletions, and created "the last term it saw + 1" before this renewal
// came. Such a candidate does not lead yet: a record it creates after one
// it saw vanished becomes its lease only if it still stands RenewDeadline
// later (Elector.confirmClaim), and this renewal deadline ends before
// that. The tombstone replaces that record (compare-and-swap on the
// version just read), so its writer's confirmation fails and it reads this
// term instead.
//
// What it cannot cover: a leader that is dead, paused or cut off from the
// store between the deletion and its renewal deadline writes no tombstone
// (see docs/elector.md, "A deleted record").
func (t *term) tombstone(ctx context.Context) {
	e := t.e
	left := e.c.RenewDeadline - e.clock.Since(t.goodStart)
	if left <= 0 {
		return
	}
	actx, cancel := e.attemptCtx(ctx, left)
	defer cancel()
	rec := t.rec
	rec.RenewTime = metav1.NewTime(e.clock.Now())
	var err error
	if t.usurped {
		err = e.c.Lock.Update(actx, rec) // from the version renew read
	} else {
		err = e.c.Lock.Create(actx, rec)
	}
	// A conflict: someone wrote first. Read again, as often as another
	// write gets in between (claims replacing claims), until the deadline.
	for lock.IsConflict(err) && actx.Err() == nil {
		cur, raw, gerr := e.c.Lock.Get(actx)
		switch {
		case gerr != nil:
			err = gerr
		case int64(cur.LeaderTransitions) > t.n:
			e.observe(*cur, raw)
			t.log.Info("Not recreating the deleted record: another candidate already created one with a higher term", "holder", cur.HolderIdentity, "term", cur.LeaderTransitions)
			return
		case cur.HolderIdentity == e.identity && int64(cur.LeaderTransitions) == t.n:
			err = nil // an earlier attempt landed
		default:
			t.usurped = true
			err = e.c.Lock.Update(actx, rec)
		}
	}
	if err != nil {
		t.log.Error(err, "Recreating the deleted record with this term failed; a candidate that never read this term may reuse it")
		return
	}
	t.buried = true
	e.observe(rec, nil)
	if t.usurped {
		t.log.Info("Replaced a record with a term not above this one (written after a deletion by a candidate that never saw this term) by this term (held, not leading), so that the next term is higher")
		return
	}
	t.log.Info("Recreated the deleted record with this term (held, not leading), so that the next term is higher")
}

// buryOverClaim is a lost term's last look at the lock, when Run is about
// to return: a claim (a record whose writer does not lead yet, see
// Elector.confirmClaim) whose term is not above this one was written by a
// candidate that never saw this term; it is replaced by this term's
// tombstone (compare-and-swap on the claim's version), so that the count
// goes on from this term, and everyone waits a lease from reading it. This
// process is the one that knew the term, and it is leaving: without this,
// a fresh candidate that claimed term 1 after a deletion (a leader whose
// renewals were too slow to write its tombstone in time, then exited)
// leads term 1. Unlike the tombstone, this needs no deadline: it replaces
// only a claim, which nobody leads, with a higher or equal term, so it
// cannot take the count backwards, and a claim confirmed meanwhile makes
// the compare-and-swap fail. A Recampaign does the same by campaigning
// (Elector.replacesClaim).
func (t *term) buryOverClaim(ctx context.Context) {
	e := t.e
	if t.buried {
		return
	}
	actx, cancel := e.attemptCtx(ctx, e.c.RenewDeadline)
	defer cancel()
	for {
		cur, _, err := e.c.Lock.Get(actx)
		if err != nil || !lock.IsClaim(*cur) || cur.HolderIdentity == e.identity || int64(cur.LeaderTransitions) > t.n {
			return
		}
		rec := t.rec
		rec.RenewTime = metav1.NewTime(e.clock.Now())
		err = e.c.Lock.Update(actx, rec)
		if lock.IsConflict(err) && actx.Err() == nil {
			// Another write got in first: maybe a candidate that did not
			// see this term replacing that claim with its own for this
			// term (fault campaign, git). Look again.
			t.log.V(2).Info("The lock changed while replacing a claim; reading it again", "holder", cur.HolderIdentity, "claimTerm", cur.LeaderTransitions)
			continue
		}
		if err != nil {
			t.log.Info("Could not replace a claim with a term not above this one", "holder", cur.HolderIdentity, "claimTerm", cur.LeaderTransitions, "err", err)
			return
		}
		t.buried = true
		e.observe(rec, nil)
		t.log.Info("Replaced a claim with a term not above this one (written after a deletion by a candidate that never saw this term) by this term (held, not leading), so that the next term is higher", "holder", cur.HolderIdentity, "claimTerm", cur.LeaderTransitions)
		return
	}
}

// stopped records the end of the term on the lock and calls
// OnStoppedLeading in its own goroutine; the returned channel is closed
// when it has returned.
func (t *term) stopped(due time.Time) <-chan struct{} {
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
	end := t.e.callbackStarted("OnStoppedLeading", due)
	go func() {
		defer close(done)
		defer end()
		t.e.c.Callbacks.OnStoppedLeading()
	}()
	return done
}

// lead runs the leader's function and renews until the term ends. It
// returns again=true when the elector should campaign again: after a
// term-limit hand-over, or a lost term with Recampaign set.
//
// The end of a term, whatever its cause, goes: cancel the function and
// wait for it; call OnStoppedLeading and wait for it; release (if the term
// was not lost). Both waits share one deadline, StopTimeout after the end
// began, and the leader keeps renewing through both, so nobody else starts
// while either runs.
func (e *Elector) lead(ctx context.Context, log logr.Logger) (again bool, err error) {
	t := e.newTerm(ctx, log)
	t.start()
	defer t.close()

	renewTimer := e.clock.NewTimer(max(e.c.RetryPeriod-e.clock.Since(t.goodStart), time.Nanosecond))
	defer renewTimer.Stop()
	renewC := renewTimer.C()
	var termC <-chan time.Time
	if e.c.TermLimit > 0 {
		termTimer := e.newTimer(e.c.TermLimit - e.clock.Since(t.acquiredAt))
		defer termTimer.Stop()
		termC = termTimer.C()
	}
	var stopTimer clock.Timer
	var stopC <-chan time.Time
	var stopDue time.Time
	defer func() {
		if stopTimer != nil {
			stopTimer.Stop()
		}
	}()
	ctxDone, lostC, fnDone := ctx.Done(), (<-chan struct{})(t.lost), (<-chan struct{})(t.fnDone)
	var stoppedDone <-chan struct{}
	cause := causeNone
	lost := false

	// beginStop starts the end of the term: the function's context is
	// cancelled and the stop deadline armed.
	beginStop := func(c stopCause) {
		if cause != causeNone {
			return
		}
		cause = c
		t.cancel()
		stopDue = e.clock.Now().Add(e.c.StopTimeout)
		stopTimer = e.clock.NewTimer(e.c.StopTimeout)
		stopC = stopTimer.C()
		e.callbackDue("OnStartedLeading", stopDue)
		if c != causeLost {
			t.log.Info("Stopping the leader's function", "cause", c.String())
		}
	}

	// noteLost handles a step-down (by the timer, a conflict, a deleted
	// record) before anything else that woke the loop at the same time.
	noteLost := func() {
		if lost || !t.isLost() {
			return
		}
		lostC, renewC, lost = nil, nil, true
		renewTimer.Stop()
		t.deadline.Stop() // stepped down already: nothing left for it to do
		t.log.Info("Could not renew within RenewDeadline, or the lock moved on; stepped down", "renewDeadline", e.c.RenewDeadline)
		beginStop(causeLost) // unless already stopping: that deadline stands
	}

	for {
		wait := e.c.RetryPeriod // the renew timer
		if renewC == nil {
			wait = e.c.StopTimeout // the stop timer
		}
		e.beat(wait)
		e.parked(true)
		select {
		case <-lostC:
			e.parked(false)
			noteLost()
		case <-ctxDone:
			e.parked(false)
			noteLost()
			ctxDone = nil
			beginStop(causeCancelled)
		case <-termC:
			e.parked(false)
			noteLost()
			termC = nil
			beginStop(causeTermLimit)
		case <-fnDone:
			e.parked(false)
			noteLost()
			fnDone = nil
			if !lost && cause == causeNone {
				t.log.Info("The leader's function returned")
				beginStop(causeFuncReturn)
			}
			e.mu.Lock()
			e.leading = false // the work has stopped; the lock is still held
			e.mu.Unlock()
			stoppedDone = t.stopped(stopDue)
		case <-stoppedDone:
			e.parked(false)
			noteLost()
			stopTimer.Stop()
			if lost && t.buried && e.c.ReleaseOnCancel {
				// The function and OnStoppedLeading have returned: the
				// tombstone need not keep anyone waiting any more.
				e.beat(0)
				t.release(ctx)
			}
			if lost {
				if e.c.Recampaign {
					t.log.Info("Campaigning again (Recampaign)")
					return true, nil
				}
				e.beat(0)
				t.buryOverClaim(ctx)
				return false, fmt.Errorf("%s: %w", e.desc, ErrLeaseLost)
			}
			t.stepDown()
			if cause == causeTermLimit || e.c.ReleaseOnCancel {
				e.beat(0)
				t.release(ctx)
			}
			if cause == causeTermLimit {
				// Leave the free lock to the others until one of them has
				// taken it, or for one LeaseDuration: followers that poll,
				// or whose reads are cached, see the release late.
				holdOff := e.clock.Now().Add(e.c.LeaseDuration)
				e.mu.Lock()
				e.holdOff = holdOff
				e.mu.Unlock()
				return true, nil
			}
			return false, nil
		case <-stopC:
			e.parked(false)
			noteLost()
			t.stepDown()
			what := "the leader's function"
			if fnDone == nil {
				what = "OnStoppedLeading"
			}
			if lost {
				t.log.Error(ErrStopTimeout, "Still running after losing the lock", "callback", what, "stopTimeout", e.c.StopTimeout)
				e.beat(0)
				t.buryOverClaim(ctx)
				return false, fmt.Errorf("%s: %w, and %w: %s still runs (after %v)", e.desc, ErrLeaseLost, ErrStopTimeout, what, e.c.StopTimeout)
			}
			t.log.Error(ErrStopTimeout, "Leaving the lock to expire", "callback", what, "stopTimeout", e.c.StopTimeout)
			if fnDone != nil {
				// Called, as documented, once StopTimeout has passed, but
				// not awaited: Run returns now.
				t.stopped(time.Time{})
			}
			return false, fmt.Errorf("%s: %w: %s still runs (after %v)", e.desc, ErrStopTimeout, what, e.c.StopTimeout)
		case <-renewC:
			e.parked(false)
			if t.suspended() {
				t.log.Info("The host was suspended past RenewDeadline; stepping down")
				t.stepDown()
				continue
			}
			err := t.renew(ctx)
			switch {
			case t.isLost():
			case err == nil:
				renewTimer.Reset(max(e.c.RetryPeriod-e.clock.Since(t.goodStart), time.Nanosecond))
			case lock.IsConflict(err) && t.usurped:
				// The record was deleted and recreated with a term not
				// above this one: put this term back in its place (see
				// tombstone), after stopping the work.
				t.log.Info("The lock's record was recreated with a term not above this one", "err", err)
				t.stepDown()
				e.beat(0)
				t.tombstone(ctx)
			case lock.IsConflict(err):
				t.log.Info("Another candidate holds the lock", "err", err)
				t.stepDown()
			case lock.IsNotFound(err):
				// The record was deleted: followers that saw it wait out
				// its lease, but this term's lock is gone. Stop the work
				// first, then leave this term in the store at once (see
				// tombstone for the order).
				t.log.Info("The lock's record is gone", "err", err)
				t.stepDown()
				e.beat(0)
				t.tombstone(ctx)
			default:
				renewTimer.Reset(e.c.RetryPeriod)
			}
			continue
		}
		if !lost && t.suspended() {
			t.log.Info("The host was suspended past RenewDeadline; stepping down")
			t.stepDown()
		}
	}
}
