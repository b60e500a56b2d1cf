package casp

import "time"

// Driver drives one call's rounds the way raft's RawNode drives a raft
// node: the caller moves messages and passes the time in; the Driver keeps
// the round policy. It holds the pending messages and which voters
// answered them, sends unanswered messages again after resend, then after
// twice as long, and so on up to four times resend (a slow voter is not
// buried in duplicates), and applies the stall rule ([Round.Replace]) at
// each of those ticks: a stalled round is abandoned and a full round
// started by start replaces it. The gossip glue (backend/gossip's round
// driver, on the wall clock) and the simulation (on virtual time) both
// drive it, so the policy the simulation checks is the one that ships.
//
// The Driver's own state belongs to one caller. Start, Handle, Tick, Done
// and Round call the [Round]'s methods, which touch its [Proposer]: a
// caller that shares the Proposer calls them under the Proposer's lock.
type Driver struct {
	start   func() *Round
	resend  time.Duration
	watched bool

	r        *Round
	pending  []Message
	answered map[string]bool // voters that answered since pending was sent
	heard    map[string]bool // voters that answered at all
	asked    int
	every    time.Duration
	due      time.Time
}

// NewDriver returns a Driver whose rounds start calls (once at Start, and
// again for each round that replaces a stalled one) and whose unanswered
// messages are sent again after resend. watched is true when the caller
// needs every reply to the very round it started (a recovery's tally):
// such a round is never replaced, and once it failed the Driver is Done
// only when every voter it asked has answered.
func NewDriver(start func() *Round, resend time.Duration, watched bool) *Driver {
	return &Driver{start: start, resend: resend, watched: watched}
}

// Start starts the first round and returns its messages to send now.
func (d *Driver) Start(now time.Time) []Message {
	d.r = d.start()
	d.pending = d.r.Prepares()
	d.answered, d.heard, d.asked = map[string]bool{}, map[string]bool{}, len(d.pending)
	d.every = d.resend
	d.due = now.Add(d.every)
	return d.pending
}

// Handle feeds one reply to the current round and returns the messages to
// send now (the accepts, once a quorum has promised) and the round's
// outcome so far. An error (a reply for another voter list, see
// [Round.Handle]) means the reply was dropped. Any other reply counts its
// voter as having answered the pending messages, whatever its ballot.
func (d *Driver) Handle(m Message) (send []Message, out Outcome, err error) {
	next, err := d.r.Handle(m)
	out = d.r.Outcome()
	if err != nil {
		return nil, out, err
	}
	d.answered[m.From], d.heard[m.From] = true, true
	if len(next) > 0 {
		d.pending, d.answered = next, map[string]bool{}
	}
	return next, out, nil
}

// Done reports whether the caller is done with the Driver: its round was
// chosen, or it failed (and, if watched, every voter asked has answered).
// A round that failed is not retried by the Driver: the caller pauses
// ([RetryPause]) and makes a new Driver.
func (d *Driver) Done() bool {
	switch d.r.out.Status {
	case Chosen:
		return true
	case Failed:
		return !d.watched || len(d.heard) >= d.asked
	}
	return false
}

// Next returns when Tick is due.
func (d *Driver) Next() time.Time { return d.due }

// Tick applies the round policy at now, if Tick is due (else it does
// nothing). A round the stall rule ([Round.Replace]) gives up on is
// abandoned and returned (its write, if Outcome says one went out, is of
// unknown outcome), and a new round from start replaces it: send is then
// its messages, to every voter. A round that skipped its prepare phase
// sent its accepts only to the voters that promised, so one of them down
// or cut off stalls it; a round a voter refused (it promised a higher
// ballot, or this one without telling this round) waits for one that does
// not answer. Otherwise send is the pending messages not yet answered, and
// the next tick comes twice as late as this one did, at most four times
// resend.
func (d *Driver) Tick(now time.Time) (send []Message, abandoned *Round) {
	if now.Before(d.due) {
		return nil, nil
	}
	if d.r.Replace(d.watched) {
		d.r.Abandon()
		abandoned = d.r
		d.r = d.start()
		d.pending = d.r.Prepares()
		d.answered, d.asked = map[string]bool{}, len(d.pending)
		d.due = now.Add(d.every)
		return d.pending, abandoned
	}
	for _, m := range d.pending {
		if !d.answered[m.To] {
			send = append(send, m)
		}
	}
	d.every = min(2*d.every, 4*d.resend)
	d.due = now.Add(d.every)
	return send, nil
}

// Round returns the current round.
func (d *Driver) Round() *Round { return d.r }

// Phase returns the kind of the pending messages: KindPrepare (or
// KindQuery) until a quorum promised, KindAccept after.
func (d *Driver) Phase() Kind { return d.pending[0].Kind }

// WriteSent reports whether accepts carrying the current round's write
// went out: a caller that gives up on the round now must treat that write
// as of unknown outcome.
func (d *Driver) WriteSent() bool {
	for _, m := range d.pending {
		if m.Kind == KindAccept && m.Value.Written == d.r.Ballot() {
			return true
		}
	}
	return false
}

// Answered returns the voters that answered the pending messages, and
// heard those that answered any (for the caller's log).
func (d *Driver) Answered() (answered, heard map[string]bool) { return d.answered, d.heard }
