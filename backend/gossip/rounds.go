package gossip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
	"github.com/b3df926d/leaderelection/lock"
)

// run runs rounds made by start until one is chosen or ctx ends. A round
// that fails (a higher ballot seen) is retried above it after a short
// random pause, so that duelling proposers do not livelock.
func (l *Lock) run(ctx context.Context, op string, start func(now uint64) *casp.Round) (casp.Outcome, error) {
	return l.runUntil(ctx, op, start, nil)
}

// runUntil is run, where lost, if set, is asked before each retry whether
// the call has lost its race already. Each round takes the round slot
// (l.rounds) and gives it back before the pause after a failure, so that a
// recovering voter's recovery rounds are not held off by its own
// candidate's retries.
func (l *Lock) runUntil(ctx context.Context, op string, start func(now uint64) *casp.Round, lost func() error) (casp.Outcome, error) {
	var pause time.Duration
	for {
		select {
		case l.rounds <- struct{}{}:
		case <-ctx.Done():
			return casp.Outcome{}, fmt.Errorf("%s: %s: %w", l.desc, op, ctx.Err())
		}
		began := time.Now()
		out, refusals, err := l.round(ctx, start, nil, lost)
		<-l.rounds
		if err != nil && lock.IsConflict(err) {
			return out, err
		}
		if err != nil {
			l.mu.Lock()
			l.distrust = true
			l.mu.Unlock()
			if len(refusals) > 0 {
				return out, fmt.Errorf("%s: %s: no quorum of voters %v (refused by %v: their voter list differs from %v): %w", l.desc, op, l.s.Voters, refusals, l.s.Voters, err)
			}
			return out, fmt.Errorf("%s: %s: no quorum of voters %v answered: %w", l.desc, op, l.s.Voters, err)
		}
		if out.Status == casp.Chosen {
			return out, nil
		}
		l.log.V(3).Info("Round failed", "op", op, "ballot", out.Ballot.String(), "seen", out.Seen.String())
		// Failed: another proposer's round is in the way. Give it time to
		// finish (its push may end this call: see lost), a random pause
		// that starts at twice a round's duration and doubles, so that
		// duelling proposers drift apart; then go above what the
		// refusals named.
		pause = casp.RetryPause(pause, time.Since(began))
		l.mu.Lock()
		learned := l.learned
		l.mu.Unlock()
		t := time.NewTimer(pause/2 + rand.N(pause/2+1))
		select {
		case <-ctx.Done():
			t.Stop()
			return out, fmt.Errorf("%s: %s: %w", l.desc, op, ctx.Err())
		case <-t.C:
		case <-learned:
			t.Stop()
		}
		if lost != nil {
			if err := lost(); err != nil {
				return out, err
			}
		}
	}
}

// round runs a call's round to its end or until ctx ends, through a
// casp.Driver: the Driver keeps the round policy (unanswered messages sent
// again after l.resend, then twice as long up to four times, the stall
// rule's replacement of a round by a full one); round does the I/O and the
// bookkeeping. refusals names voters that refused for a different voter
// list. seen, if set, sees every reply; it then also waits, after a
// failure, until every voter asked has answered (or ctx ends), so that it
// sees them all.
//
// lost, if set, is asked whenever a new value is learned during the prepare
// phase; if it reports that the call has lost its race, the round ends with
// that error (no accept has gone out, so nothing of it can be chosen).
func (l *Lock) round(ctx context.Context, start func(now uint64) *casp.Round, seen func(*envelope, casp.Message), lost func() error) (out casp.Outcome, refusals []string, err error) {
	d := casp.NewDriver(func() *casp.Round { return start(nowMillis()) }, l.resend, seen != nil)
	l.propMu.Lock()
	first := d.Start(time.Now())
	l.propMu.Unlock()
	id, replies, done := l.tr.open(4*len(l.s.Voters) + 4)
	defer done()
	l.sendAll(id, first)
	tick := time.NewTimer(time.Until(d.Next()))
	defer tick.Stop()
	// ended is the outcome of a round given up on; its write, if accepts
	// carrying it went out, is unsure.
	ended := func(unsure bool) casp.Outcome {
		if unsure && d.WriteSent() {
			l.addUnsure(d.Round().Ballot())
		}
		l.propMu.Lock()
		defer l.propMu.Unlock()
		return d.Round().Outcome()
	}
	var learned chan struct{}
	for {
		if lost != nil {
			l.mu.Lock()
			learned = l.learned
			l.mu.Unlock()
		}
		select {
		case <-learned:
			if d.Phase() == casp.KindPrepare {
				if err := lost(); err != nil {
					return ended(false), refusals, err
				}
			}
		case <-ctx.Done():
			out = ended(true)
			answered, heard := d.Answered()
			l.log.V(3).Info("Round ended without a quorum", "ballot", out.Ballot.String(), "answered", answered, "heard", heard, "phase", d.Phase().String())
			return out, refusals, ctx.Err()
		case <-l.stop:
			return ended(true), refusals, errors.New("lock closed")
		case e := <-replies:
			if e.Kind == kindRefused {
				if !slices.Contains(refusals, e.From) {
					refusals = append(refusals, e.From)
					l.log.Error(nil, "A voter refused this candidate's request: their voter list differs from Options.Voters; every candidate needs the same list", "voter", e.From, "voters", l.s.Voters)
				}
				continue
			}
			var m casp.Message
			if err := json.Unmarshal(e.Payload, &m); err != nil {
				continue
			}
			m.From = e.From // the name memberlist authenticated
			l.noteAge(e, m)
			if seen != nil {
				seen(e, m)
			}
			l.propMu.Lock()
			next, o, herr := d.Handle(m)
			finished := d.Done()
			l.propMu.Unlock()
			out = o
			if herr != nil {
				l.log.V(2).Info("Dropped a reply", "from", e.From, "err", herr)
				continue
			}
			l.log.V(4).Info("Reply", "ballot", out.Ballot.String(), "from", m.From, "kind", m.Kind.String(), "reason", m.Reason.String(), "seen", m.Seen.String(), "status", out.Status.String())
			l.sendAll(id, next)
			if out.Status == casp.Failed && out.Wrote {
				l.addUnsure(out.Ballot)
			}
			if finished {
				return out, refusals, nil
			}
		case <-tick.C:
			l.propMu.Lock()
			send, abandoned := d.Tick(time.Now())
			var was casp.Outcome
			var skipped bool
			if abandoned != nil {
				was, skipped = abandoned.Outcome(), abandoned.SkipsPrepare()
			}
			ballot := d.Round().Ballot()
			l.propMu.Unlock()
			if abandoned != nil {
				// The stall rule (casp.Round.Replace) replaced the
				// round by a full one above every ballot seen, to every
				// voter; the write, if it went out, is unsure.
				if was.Wrote {
					l.addUnsure(was.Ballot)
				}
				l.log.V(3).Info("Round stalled; running a full one above it", "ballot", was.Ballot.String(), "skippedPrepare", skipped, "next", ballot.String())
			}
			l.sendAll(id, send)
			tick.Reset(time.Until(d.Next()))
		}
	}
}

// sendAll sends protocol messages as part of request id.
func (l *Lock) sendAll(id uint64, ms []casp.Message) {
	for _, m := range ms {
		l.tr.sendMsg(id, m)
	}
}

func (l *Lock) addUnsure(b casp.Ballot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.distrust = true
	if len(l.unsure) >= 16 {
		l.unsure = l.unsure[1:]
	}
	l.unsure = append(l.unsure, b)
}
