package gossip

import (
	"encoding/json"
	"time"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
)

// heir is the candidate (name and process incarnation) whose turn comes
// first to take over from the released value v: a release's accepts
// prepare its take-over round. "" if there is none, or its incarnation is
// unknown.
func (l *Lock) heir(v casp.Value) (string, uint64) {
	rec, err := decodeRecord(v.Data)
	if err != nil {
		return "", 0
	}
	first := l.firstTurn(v, rec)
	if first == "" {
		return "", 0
	}
	return first, l.tr.incOf(first)
}

// push sends a chosen value to every other member, with how long its write
// took; gift, if set, goes to its heir only.
func (l *Lock) push(v casp.Value, took time.Duration, gift *casp.Prepared) {
	payload, err := json.Marshal(v)
	if err != nil {
		return
	}
	e := l.tr.envelope(kindPush, v.Written, payload)
	e.Took = took.Microseconds()
	l.lastPush.Store(&ownPush{v: v, payload: payload, took: took, at: time.Now()})
	// A release goes first to the candidate whose turn is first, and to
	// the others one turn step later: they would wait at least that long
	// anyway, and the first's take-over round then has the voters to
	// itself instead of sharing them with a dozen pushes and the wake-ups
	// they cause. Usually the others learn the new holder's push first
	// and drop the release as older.
	first, later := "", time.Duration(0)
	if rec, err := decodeRecord(v.Data); err == nil && rec.HolderIdentity == "" {
		first, later = l.firstTurn(v, rec), l.turnStep()
	}
	var heir *envelope
	if gift != nil && gift.Ballot.Node == first {
		c := *e
		c.Gift = gift
		heir = &c
	}
	l.tr.broadcast(e, first, later, heir)
}

// ownPush is a write of this candidate's, as it was pushed.
type ownPush struct {
	v       casp.Value
	payload []byte
	took    time.Duration
	at      time.Time // when it was pushed
}

// repush sends this candidate's last write, if it is still the newest
// value known here, to id, whose process memberlist now shows alive at
// addr: one that joined, or was re-admitted after memberlist declared it
// dead (a paused or starved process misses its probes for a moment).
// broadcast sends only to the members memberlist shows alive, so a push
// made meanwhile never went, and the member's watcher would learn of the
// write only by its own timers. Only the writer sends it again, once per
// coming alive. The push's Took is the write's: the receiver dates the
// write's start no later than arrival minus Took, which a late arrival
// only makes later (its age understated, never overstated).
//
// Not sent again: a release (its push reaches all but the first in turn
// a turn step late, and sent at once it would reach a re-admitted member
// ahead of the first in turn's take-over), and a record whose lease has
// run out since its push (the follower's timers no longer wait on it; and
// after a re-initialisation, which takes longer than a lease, this
// candidate's view may be older than the register).
func (l *Lock) repush(id, addr string) {
	p := l.lastPush.Load()
	if p == nil {
		return
	}
	rec, err := decodeRecord(p.v.Data)
	if err != nil || rec.HolderIdentity == "" || time.Since(p.at) > time.Duration(rec.LeaseDurationSeconds)*time.Second {
		return
	}
	l.mu.Lock()
	newest := l.haveLatest && l.latest.Written == p.v.Written
	l.mu.Unlock()
	if !newest {
		return
	}
	e := l.tr.envelope(kindPush, p.v.Written, p.payload)
	e.Took = p.took.Microseconds()
	l.tr.sendTo(id, addr, e)
}
