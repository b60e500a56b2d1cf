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
