package leaderelection

import (
	"context"
	"math"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/b3df926d/leaderelection/lock"
)

// claim is a record this candidate wrote as a claim (see confirmClaim): it
// leads only if the claim still stands at until.
type claim struct {
	rec   lock.Record
	until time.Time
}

// asClaim turns next into a claim that must stand for stand: no
// AcquireTime, and a lease that covers the whole wait and the
// confirmation after it (a read and a write, within RenewDeadline), so
// that no candidate that reads it takes it over as expired first. With
// the wait alone, a follower that read the claim as it landed came to its
// expiry at the instant the claimant began to confirm, and took it over
// with the next term first (a gossip example test, once).
func (e *Elector) asClaim(next lock.Record, stand time.Duration) lock.Record {
	next.AcquireTime = metav1.Time{}
	next.LeaseDurationSeconds = max(e.leaseSec, int(math.Ceil((stand + e.c.RenewDeadline).Seconds())))
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
