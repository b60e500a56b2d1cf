package leaderelection

import (
	"time"

	"github.com/go-logr/logr"

	"github.com/b3df926d/leaderelection/lock"
)

// observation is what this candidate has seen of the lock, apart from its
// own leadership: the record it last read or wrote and when that changed
// on its clock, the highest term it knows, when it found the record gone,
// and a hold-off after a term-limit hand-over. From it the campaign decides
// how long the lock is held (heldFor) and which claims to replace
// (replacesClaim). Guarded by Elector.mu.
type observation struct {
	rec     lock.Record // the record last read or written
	raw     []byte      // ... as the lock encoded it (nil: written by this process)
	at      time.Time   // when rec last changed, on this clock (see observe)
	maxTerm int64       // the highest term this process has read (claims aside) or held

	holdOff     time.Time     // after a term-limit hand-over: leave a free lock to others until then
	goneAt      time.Time     // when this candidate first found no record (zero while one exists)
	slowestGone time.Duration // the slowest read that found no record since goneAt

	// blind: a read of the lock, or a takeover's write, failed since the
	// last read that succeeded; remeasured: rec, seen before this
	// candidate was blind, was measured again from a read after (see
	// observe: once per record).
	blind, remeasured bool
}

// observe records what was read or written; it resets the observation time
// only when the record changed, so expiry is measured on this clock from the
// last change seen.
//
// With Recover, the first read that succeeds after reads that failed (or
// a takeover's write: a caching lock may serve reads while its store is
// down) counts as a change seen now, whether the record changed or not
// (and however old lock.Aged says it is); for a record seen before those
// failures, once per record. A candidate that could not see the store
// cannot tell a dead holder from a recovering leader that could not renew
// for the same outage, and gives it the lease from the store's return to
// renew in its term (docs/elector.md, "A follower after an outage"). It
// only ever delays a takeover.
//
// It reports whether rec names a new holder of a lease (not a claim), the
// change OnNewLeader is called for.
func (e *Elector) observe(rec lock.Record, raw []byte) (newHolder bool) {
	now := e.clock.Now() // never call the clock under e.mu: fake clocks run callbacks under their lock
	// A lock that knows how old the record is (lock.Aged: a gossip voter
	// accepted it that long ago) dates the change back to no later than
	// its write: a renewal learned late expires as if seen at once.
	observedAt := now
	if a, ok := e.c.Lock.(lock.Aged); ok && raw != nil {
		if age, ok := a.Age(raw); ok && age > 0 {
			observedAt = now.Add(-age)
		}
	}
	e.mu.Lock()
	changed := raw == nil || string(raw) != string(e.seen.raw)
	// A claim's writer does not lead yet (and may never): announce holders
	// of leases only.
	announce := !lock.IsClaim(rec) && rec.HolderIdentity != e.announced
	if announce {
		e.announced = rec.HolderIdentity
	}
	if changed {
		e.seen.rec, e.seen.raw, e.seen.at, e.seen.remeasured = rec, raw, observedAt, false
	}
	if e.seen.blind && e.c.Recover {
		switch {
		case changed:
			// First seen after the outage: from now, not dated back by
			// an age, as a candidate that just started counts.
			e.seen.at = now
		case !e.seen.remeasured:
			// Seen before the outage: its lease starts again, once.
			e.seen.at, e.seen.remeasured = now, true
		}
	}
	e.seen.blind = false
	if !lock.IsClaim(rec) {
		// A claim's term is not in use until its writer confirms it (and
		// a claim with a term already in use is replaced: tryAcquire).
		e.seen.maxTerm = max(e.seen.maxTerm, int64(rec.LeaderTransitions))
	}
	e.seen.goneAt, e.seen.slowestGone = time.Time{}, 0
	if (rec.HolderIdentity != "" && rec.HolderIdentity != e.identity) || int64(rec.LeaderTransitions) > e.term {
		e.seen.holdOff = time.Time{} // another candidate took over (maybe already gone): the hand-over is done
	}
	e.mu.Unlock()
	if announce && e.leaders != nil {
		select { // keep only the newest holder if the callback lags
		case <-e.leaders:
		default:
		}
		e.leaders <- rec.HolderIdentity
	}
	return announce
}

// warnIfIdentityShared logs a warning when a candidate that does not lead
// reads a record under its own identity that it did not write: a term it
// never held, or a renewal since it last looked. Another process (or an
// earlier run of this one) uses the same identity, and two processes with
// one identity each take the other's lease for their own.
func (e *Elector) warnIfIdentityShared(log logr.Logger, rec lock.Record, raw []byte) {
	if rec.HolderIdentity != e.identity {
		return
	}
	e.mu.Lock()
	foreignTerm := int64(rec.LeaderTransitions) > e.term
	renewedBehindUs := e.seen.raw != nil && e.seen.rec.HolderIdentity == e.identity && string(raw) != string(e.seen.raw)
	e.mu.Unlock()
	if (foreignTerm || renewedBehindUs) && e.once(&e.sharedLogged) {
		log.Info("Warning: the lock is held under this process's identity by another process (or an earlier run of this one); give every candidate a unique identity", "sharedIdentity", e.identity, "term", rec.LeaderTransitions)
	}
}

// heldFor is how long, from now, the last observed record keeps this
// candidate from taking the lock: until the holder's lease, measured from
// when this process saw the record change, runs out; for a free record,
// until a term-limit hold-off ends. Not positive: it may be taken now.
func (e *Elector) heldFor(now time.Time) time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.seen.rec.HolderIdentity != "" {
		return e.seen.at.Add(e.recordLease(e.seen.rec)).Sub(now)
	}
	return e.seen.holdOff.Sub(now)
}

// recordLease is how long the holder of rec promised its lease lasts.
func (e *Elector) recordLease(rec lock.Record) time.Duration {
	if rec.LeaseDurationSeconds > 0 {
		return time.Duration(rec.LeaseDurationSeconds) * time.Second
	}
	return e.c.LeaseDuration
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
