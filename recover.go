package leaderelection

import (
	"fmt"
	"time"
)

// Recovery (Config.Recover): a leader whose renewals fail past
// RenewDeadline stops leading as usual (IsLeader false, the gate closed,
// at the same instant, so a takeover is as safe as without recovery), but
// its function keeps running and it keeps renewing this term's record.
// A renewal is a compare-and-swap on the version this leader last wrote
// (or, when an earlier write of its own landed late, on a record that
// still names it in this term): if it succeeds, nobody wrote the record
// meanwhile, so no other term began, and the leader leads again in the
// same term with the gate reopened. Anything else it finds (another
// holder, a higher term, a deleted record) ends the term as a lost lease.
// So does RecoverDeadline after the last good renewal's start. See
// docs/elector.md, "Riding out a store outage".

// armDeadline arms the step-down timer at RenewDeadline after the start
// of the last good renewal: it steps down, or with Recover pauses.
func (t *term) armDeadline() {
	e := t.e
	from := t.good.start
	e.mu.Lock()
	t.leaseFrom = from
	e.mu.Unlock()
	t.deadline = e.afterFunc(e.c.RenewDeadline-e.clock.Since(from), func() { t.lapse(from) })
}

// lapse is what RenewDeadline passing does to the lease renewed last at
// from: a step-down, or with Recover a pause. The step-down timer calls
// it, and so does stepDownIfSuspended when it sees that instant first.
func (t *term) lapse(from time.Time) {
	if t.e.c.Recover {
		t.pause(from)
		return
	}
	t.stepDown()
}

// pause is the step-down of a recovering leader whose lease, renewed
// last at from, has lapsed: not leading, the gate closed, the function
// left running. A timer calls it; a lapse of a lease renewed since is
// ignored.
func (t *term) pause(from time.Time) {
	e := t.e
	e.mu.Lock()
	if t.isLost() || !t.leaseFrom.Equal(from) {
		e.mu.Unlock()
		return
	}
	e.recovering = true
	e.leading = false
	e.closeGate()
	e.mu.Unlock()
	select {
	case t.paused <- struct{}{}:
	default:
	}
}

// resume leads again after a renewal, begun at start, succeeded while
// recovering, if that renewal's lease has not lapsed yet: the gate
// reopens in the same term. It reports whether it resumed.
func (t *term) resume(start time.Time) bool {
	e := t.e
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.recovering || t.isLost() || e.clock.Since(start) >= e.c.RenewDeadline {
		return false
	}
	e.recovering = false
	select {
	case <-t.fnDone: // the work has stopped; the lock is still held
	default:
		e.leading = true
	}
	if e.c.Gate != nil {
		e.c.Gate.Open(t.ctx, t.n) // stays closed if the function was told to stop
	}
	return true
}

// isRecovering reports whether the term is paused (see pause).
func (t *term) isRecovering() bool {
	t.e.mu.Lock()
	defer t.e.mu.Unlock()
	return t.e.recovering && !t.isLost()
}

// renewBound is how long the next renewal may take: until RenewDeadline
// after the last good renewal's start while leading; while recovering, a
// RenewDeadline of its own, but not past RecoverDeadline.
func (t *term) renewBound() time.Duration {
	e := t.e
	if !t.isRecovering() {
		return e.c.RenewDeadline - e.clock.Since(t.good.start)
	}
	return min(e.c.RenewDeadline, e.c.RecoverDeadline-e.clock.Since(t.good.start))
}

// logPause says that the term is paused, and why.
func (t *term) logPause() {
	e := t.e
	kv := []any{"renewDeadline", e.c.RenewDeadline, "recoverDeadline", e.c.RecoverDeadline}
	if t.lastErr != nil {
		kv = append(kv, "lastError", t.lastErr.Error())
	}
	t.log.Info("No renewal succeeded within RenewDeadline: not leading, the write gate closed; the leader's function keeps running while this term's record is renewed again (Recover)", kv...)
}

// giveUp ends a recovery that has lasted RecoverDeadline since the last
// good renewal's start: the term is lost.
func (t *term) giveUp() {
	t.stepDownFor(fmt.Sprintf("no renewal succeeded within RecoverDeadline (%v) of the last good one", t.e.c.RecoverDeadline))
}
