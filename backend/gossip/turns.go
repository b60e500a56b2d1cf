package gossip

import (
	"context"
	"hash/fnv"
	"time"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
	"github.com/b3df926d/leaderelection/lock"
)

// Turns. When a record is released or its lease runs out, every follower
// learns it at about the same instant; if all ran a round at once, their
// prepares would pre-empt each other's accepts (duelling proposers) for
// many rounds. Instead each waits its turn: the candidates rank themselves
// by a hash of their name and the token of that record, so that all rank
// alike (from the same pushed record and memberlist's view of who is
// alive) and the first changes with every write; the record's holder and
// its writer rank last. Rank k waits k steps of three writes' duration
// (est: measured by the writers and carried on their pushes), at most
// maxTurns steps, or half what is left of the call's context. A chosen
// write pushed meanwhile ends the wait: a Get serves it, a write that it
// refuses ends as a conflict without a round. Turns only order attempts:
// every write is still a compare-and-swap round, so a candidate whose turn
// is wrong (views differ, the first ranked is gone) costs time, not safety.
const (
	maxTurns       = 4
	maxTurnStep    = 500 * time.Millisecond
	defaultTurnEst = 20 * time.Millisecond
)

// turn is how long this candidate lets others go first before it runs a
// round to take over from the newest record it knows.
func (l *Lock) turn(ctx context.Context) time.Duration {
	l.mu.Lock()
	v, rec := l.latest, l.latestRec
	l.mu.Unlock()
	seed, last := turnOrder(v, rec)
	self := l.s.Identity
	rank := 0
	for _, name := range l.tr.aliveNames() {
		if name != self && !last[name] && (last[self] || turnBefore(seed, name, self)) {
			rank++
		}
	}
	d := time.Duration(min(rank, maxTurns)) * l.turnStep()
	if dl, ok := ctx.Deadline(); ok {
		d = min(d, time.Until(dl)/2)
	}
	return d
}

// turnStep is how long each rank waits for the one before it.
func (l *Lock) turnStep() time.Duration {
	l.mu.Lock()
	est := l.est
	l.mu.Unlock()
	if est == 0 {
		est = defaultTurnEst
	}
	return min(3*est+time.Millisecond, maxTurnStep)
}

// turnOrder is what every member ranks turns by to take over from v
// (decoded as rec, nil if it is not a record): the seed of turnBefore, and
// the names that rank last (its writer and its holder).
func turnOrder(v casp.Value, rec *lock.Record) (seed string, last map[string]bool) {
	last = map[string]bool{v.Written.Node: true}
	if rec != nil {
		last[rec.HolderIdentity] = true
	}
	return v.Token().String(), last
}

// firstTurn is the live member whose turn comes first to take over from
// v (decoded as rec), as every member ranks it (see turn); "" if there is
// none.
func (l *Lock) firstTurn(v casp.Value, rec *lock.Record) string {
	seed, last := turnOrder(v, rec)
	first := ""
	for _, name := range l.tr.aliveNames() {
		if !last[name] && (first == "" || turnBefore(seed, name, first)) {
			first = name
		}
	}
	return first
}

// turnBefore reports whether candidate a's turn comes before b's for the
// record whose token is seed.
func turnBefore(seed, a, b string) bool {
	ha, hb := turnHash(seed, a), turnHash(seed, b)
	return ha < hb || (ha == hb && a < b)
}

func turnHash(seed, name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(seed))
	h.Write([]byte{0})
	h.Write([]byte(name))
	return h.Sum64()
}

// takeTurn waits this candidate's turn (see turn), ending early when done,
// asked whenever a new value is learned, reports true; it returns done's
// last answer.
func (l *Lock) takeTurn(ctx context.Context, done func() bool) bool {
	d := l.turn(ctx)
	if d <= 0 {
		return done()
	}
	l.log.V(4).Info("Waiting for candidates whose turn comes first", "wait", d)
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		l.mu.Lock()
		learned := l.learned
		l.mu.Unlock()
		if done() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-l.stop:
			return false
		case <-t.C:
			return done()
		case <-learned:
		}
	}
}

// takingOver reports whether a write of this handle takes the record over
// from another candidate (or from a release, or an empty register) rather
// than renewing or releasing the record this candidate holds, and has not
// waited its turn in Get already.
func (l *Lock) takingOver() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.haveTurnTaken && l.haveToken && l.turnTaken == l.token {
		l.haveTurnTaken = false
		return false
	}
	held := l.haveToken && l.haveLatest && l.latest.Token() == l.token &&
		l.latestRec != nil && l.latestRec.HolderIdentity == l.s.Identity
	return !held
}

// noteTook adds a write's duration to the estimate turns are sized by.
func (l *Lock) noteTook(d time.Duration) {
	if d <= 0 {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.est == 0 {
		l.est = d
		return
	}
	// A write that duelled (seconds under load) would size every turn by
	// it: a sample counts at most twice the estimate.
	l.est += (min(d, 2*l.est) - l.est) / 4
}
