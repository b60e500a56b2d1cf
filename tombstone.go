package leaderelection

import (
	"context"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/b3df926d/leaderelection/lock"
)

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
// function or OnStoppedLeading. It is a held record (this holder, a full
// lease), not a released one, so it invites nobody while the function
// winds down: candidates that read it wait a whole lease from then, as for
// any lost lease; run releases it once the function and OnStoppedLeading
// have returned (with ReleaseOnCancel). What it may replace, and until
// when, is putBack's: it never overwrites a record another candidate
// wrote after reading this term.
//
// A record already there whose term is not above this one (the renewal
// found it: the usurper; or it beat the Create) was written by a candidate
// that never read this term: a follower whose reads all fell while the
// record was gone, so it missed this term's acquisition between two
// deletions, and created "the last term it saw + 1" before this renewal
// came. Such a candidate does not lead yet: a record it creates after one
// it saw vanished becomes its lease only if it still stands RenewDeadline
// later (Elector.confirmClaim). The tombstone replaces that claim
// (compare-and-swap on the version just read), so its writer's
// confirmation fails and it reads this term instead.
//
// What it cannot cover: a leader that is dead, paused or cut off from the
// store from the deletion until LeaseDuration after its last good renewal
// writes no tombstone (see docs/elector.md, "A deleted record").
func (t *term) tombstone(ctx context.Context, usurper *lock.Record, raw []byte) {
	e := t.e
	left := t.good.start.Add(e.c.LeaseDuration).Sub(e.clock.Now())
	if left <= 0 {
		return // too late to create; Run's last look still replaces a claim
	}
	e.vitals.beat(left)
	actx, cancel := e.attemptCtx(ctx, left)
	defer cancel()
	// Without a usurper, nil: no record, create it. With one, renew read
	// it; the lock holds its version.
	t.putBack(actx, usurper, raw)
}

// lastLook is a lost term's last look at the lock, when Run is about to
// return, unless this term's tombstone is already in the store. This
// process is the one that knew the term, and it is leaving: if the record
// is gone, or is a claim (a record whose writer does not lead yet, see
// Elector.confirmClaim) with a term not above this one, written by a
// candidate that never saw this term, it puts this term's tombstone in its
// place (putBack), so that the count goes on from this term, and everyone
// waits a lease from reading it. Without it, a leader whose renewals were
// too slow to write the tombstone in time, or that found the record gone
// just before its renewal deadline, then exited (the example does), leaves
// nobody who knows the term: a fresh candidate (it, restarted) claims term
// 1, and a follower that saw only the term before replaces that claim
// with its own claim for this very term, and leads it (the git fault
// campaign, term 541). A Recampaign does the same by campaigning
// (Elector.replacesClaim).
func (t *term) lastLook(ctx context.Context) {
	e := t.e
	if t.buried {
		return
	}
	actx, cancel := e.attemptCtx(ctx, e.c.RenewDeadline)
	defer cancel()
	cur, raw, err := e.c.Lock.Get(actx)
	switch {
	case lock.IsNotFound(err):
		cur = nil
	case err != nil:
		return
	}
	t.putBack(actx, cur, raw)
}

// putBack writes this term's tombstone (t.rec, held, renewed now) in place
// of cur, the record just read (nil: none), if this term may replace it,
// and again in place of whatever got in first, until the tombstone lands
// or actx ends. May replace:
//
//   - no record, by a Create (compare-and-swap on "none exists"), until
//     LeaseDuration after this term's last good renewal started. A
//     candidate that knew this term creates its claim for the next one no
//     sooner than LeaseDuration after finding the record gone (after the
//     deletion, so after that renewal), and leads it RenewDeadline later
//     at the earliest; a tombstone landing after that term was also
//     deleted would take the count backwards. The margin of RenewDeadline
//     covers a Create still in flight when actx ends.
//   - a claim whose term is not above this one, at any time: nobody leads
//     it, the tombstone's term is at least as high, and a claim confirmed
//     meanwhile makes the compare-and-swap fail.
//   - any other record whose term is not above this one, only until this
//     term's renewal deadline (good.start + RenewDeadline): a claim written
//     after the deletion cannot have been confirmed by then. Later it may
//     be a lease confirmed by a candidate that missed this term; this
//     process has stepped down, and that leader finds its own term.
func (t *term) putBack(actx context.Context, cur *lock.Record, raw []byte) {
	e := t.e
	createBy := t.good.start.Add(e.c.LeaseDuration)
	overBy := t.good.start.Add(e.c.RenewDeadline)
	var replaced *lock.Record
	for {
		now := e.clock.Now()
		rec := t.rec
		rec.RenewTime = metav1.NewTime(now)
		var err error
		switch {
		case cur == nil && now.Before(createBy):
			err = e.c.Lock.Create(actx, rec)
		case cur == nil:
			t.log.Info("Not recreating the deleted record: too late, a candidate that knew this term may have led the next one meanwhile", "lateBy", now.Sub(createBy))
			return
		case cur.HolderIdentity == e.identity && int64(cur.LeaderTransitions) == t.n:
			// This term is in the lock already: an earlier attempt
			// landed, or (a last look) nobody has written since.
			t.buried = true
			e.observe(*cur, raw)
			t.log.V(2).Info("This term's record is in the lock; nothing to put back")
			return
		case int64(cur.LeaderTransitions) > t.n:
			e.observe(*cur, raw)
			t.log.Info("Not putting this term back: the lock has moved on", "holder", cur.HolderIdentity, "term", cur.LeaderTransitions)
			return
		case lock.IsClaim(*cur) || now.Before(overBy):
			replaced = cur
			err = e.c.Lock.Update(actx, rec) // from the version just read
		default:
			t.log.Info("Not replacing a record with a term not above this one: it may lead now", "holder", cur.HolderIdentity, "recordTerm", cur.LeaderTransitions)
			return
		}
		if err == nil {
			t.buried = true
			e.observe(rec, nil)
			if replaced != nil {
				t.log.Info("Replaced a record with a term not above this one (written after a deletion by a candidate that never saw this term) by this term (held, not leading), so that the next term is higher", "holder", replaced.HolderIdentity, "recordTerm", replaced.LeaderTransitions, "claim", lock.IsClaim(*replaced))
			} else {
				t.log.Info("Recreated the deleted record with this term (held, not leading), so that the next term is higher")
			}
			return
		}
		if (!lock.IsConflict(err) && !lock.IsNotFound(err)) || actx.Err() != nil {
			t.log.Error(err, "Putting this term back in the lock failed; a candidate that never read this term may reuse it")
			return
		}
		// Someone wrote first (a claim replacing a claim, say: the git
		// campaign found it), or deleted it again: read what is there.
		t.log.V(2).Info("The lock changed while putting this term back; reading it again", "err", err)
		var gerr error
		cur, raw, gerr = e.c.Lock.Get(actx)
		switch {
		case lock.IsNotFound(gerr):
			cur = nil
		case gerr != nil:
			t.log.Error(gerr, "Putting this term back in the lock failed; a candidate that never read this term may reuse it")
			return
		}
	}
}
