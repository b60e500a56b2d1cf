package leaderelection

import (
	"context"
	"errors"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/b3df926d/leaderelection/lock"
)

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
		e.parkedOn(e.changes, []<-chan time.Time{timer.C()})
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
		e.seen.blind = false // the lease is measured from goneAt, set by a read that succeeded
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
		e.mu.Lock()
		e.seen.blind = true
		e.mu.Unlock()
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
		// The store is unreachable, though the read that found the
		// lease expired succeeded (a caching lock served it): blind too.
		e.mu.Lock()
		e.seen.blind = true
		e.mu.Unlock()
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
