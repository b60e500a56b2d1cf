package casp

import (
	"fmt"
	"slices"
)

// ProposerConfig configures a proposer process. Any candidate may propose,
// voter or not.
type ProposerConfig struct {
	// Node is this process's node name (memberlist's), unique in the cluster.
	Node string
	// Incarnation identifies this process: random, fresh at every start. It
	// makes ballots unique even if a restarted process reuses counters.
	Incarnation uint64
	// Voters is the static voter list.
	Voters []string
}

// Proposer runs rounds. It remembers the highest ballot it has seen, so each
// new round starts above it. It is not safe for concurrent use; the glue runs
// one round at a time per proposer (or serialises calls).
type Proposer struct {
	cfg  ProposerConfig
	hash string
	// last is the highest ballot this proposer has used or seen.
	last Ballot

	// ownVote lets a recovery round count its own acceptor (rule c); only
	// the tests' exhaustive search sets it.
	ownVote bool
	// weakRead answers a round that keeps the value from its promises
	// without the agreement the read rule asks for; only the tests set it,
	// to show the simulation catches it.
	weakRead weakReadRule
}

// weakReadRule names a weakening of the read rule (see Round.promise).
type weakReadRule uint8

const (
	readRuleShipped weakReadRule = iota
	// readHighest: finish at the promises' highest accepted ballot even
	// when the quorum does not agree on it.
	readHighest
	// readZero: finish also when the quorum agrees on the zero ballot
	// (nothing accepted, or re-initialised voters).
	readZero
	// queryHighest: readHighest for queries only.
	queryHighest
)

// NewProposer returns a proposer.
func NewProposer(cfg ProposerConfig) (*Proposer, error) {
	if err := ValidateVoters(cfg.Voters); err != nil {
		return nil, err
	}
	if cfg.Node == "" {
		return nil, fmt.Errorf("proposer node: empty name")
	}
	cfg.Voters = slices.Clone(cfg.Voters)
	return &Proposer{cfg: cfg, hash: VoterHash(cfg.Voters)}, nil
}

// Observe raises the proposer's idea of the highest ballot in use (from a
// Nack the glue saw outside a round, or a pushed write), so its next round
// starts above it.
func (p *Proposer) Observe(b Ballot) { p.last = maxBallot(p.last, b) }

// Start begins a round that applies change. now is the caller's clock in the
// ballot counter's unit (it may be zero without clock-bounded floors): the
// round's counter is at least now and above every ballot seen. Send
// [Round.Prepares] to every voter.
func (p *Proposer) Start(now uint64, change Change) *Round {
	return p.start(now, Ballot{}, "", change, true)
}

// Query begins a read that promises nothing, so that it pre-empts no other
// round (many candidates reading at once do not duel): [Round.Prepares]
// returns a query to every voter, each answered with the ballot and value it
// accepted last. The query is chosen once a quorum of the reports name one
// accepted ballot other than the zero ballot. That ballot's value is then
// chosen (a quorum accepted it), and no value chosen before the query began
// is newer: its quorum meets this one, whose members would report its
// ballot or a later one. A quorum at the zero ballot proves nothing (it may
// be re-initialised voters while a value survives elsewhere), unless every
// voter reports it: then no voter holds a value and the register is empty.
// The query fails once every voter has answered without such a quorum; the caller
// then reads by a round ([Proposer.Start] with [Read]), as it does when the
// query takes too long (a voter down, reports that disagree because a
// write is in flight).
func (p *Proposer) Query(now uint64) *Round {
	r := p.start(now, Ballot{}, "", Read, false)
	r.query = true
	return r
}

// Recover begins this voter's recovery round: a read at a ballot above floor
// (from [Acceptor.Floor]) through the other voters only; the voter's own
// acceptor takes no part and its promise or acceptance would not count. Feed
// the Chosen outcome to [Acceptor.Recover]. The proposer's Node must be the
// recovering voter's name.
func (p *Proposer) Recover(now uint64, floor Ballot) *Round {
	exclude := p.cfg.Node
	if p.ownVote {
		exclude = ""
	}
	return p.start(now, floor, exclude, Read, false)
}

func (p *Proposer) start(now uint64, above Ballot, exclude string, change Change, fastRead bool) *Round {
	c := max(p.last.Counter+1, now, above.Counter+1)
	b := Ballot{Counter: c, Node: p.cfg.Node, Incarnation: p.cfg.Incarnation}
	p.last = b
	r := &Round{p: p, ballot: b, change: change, fastRead: fastRead}
	for _, v := range p.cfg.Voters {
		if v != exclude {
			r.peers = append(r.peers, peer{name: v})
		}
	}
	return r
}

// Status is a round's state.
type Status uint8

// Round states.
const (
	// Pending: waiting for replies.
	Pending Status = iota
	// Chosen: a quorum accepted the round's value; Outcome.Value is the
	// register's value at this point of the history.
	Chosen
	// Failed: this ballot can no longer gather a quorum (refusals, or a
	// promiser refused the accept). Start a new round; Outcome.Seen is the
	// highest ballot seen and the proposer has observed it already. If
	// Outcome.Wrote, the write's outcome is unknown: a later round may still
	// choose it (its Value.Written is this round's ballot, by which a retry
	// can recognise it).
	Failed
)

func (s Status) String() string {
	switch s {
	case Pending:
		return "pending"
	case Chosen:
		return "chosen"
	case Failed:
		return "failed"
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// Outcome is what a round learned.
type Outcome struct {
	Status Status
	// Ballot is the round's ballot.
	Ballot Ballot
	// Value is the chosen value (Chosen).
	Value Value
	// Wrote, when Chosen, says the chosen value is this round's write (the
	// change returned write=true); otherwise the round chose the value it
	// read. When Failed, it says accepts carrying this round's write were
	// sent: the write's outcome is unknown, since a later round may still
	// choose it.
	Wrote bool
	// Err is the change's error (Chosen with the register unchanged), e.g.
	// wrapping ErrConflict or ErrNotFound.
	Err error
	// Seen is the highest ballot any refusal named (Failed).
	Seen Ballot
}

// Round is one prepare/accept round of a proposer.
type Round struct {
	p      *Proposer
	ballot Ballot
	change Change
	// peers are the voters taking part (all, or all but a recovering one).
	peers []peer
	// fastRead: a round that keeps the value may finish on its promises
	// alone (see promise); not recovery rounds.
	fastRead bool
	// query: a Query, not a round (see Proposer.Query).
	query bool
	// order lists the promisers in order of arrival, up to the quorum: the
	// promises the value is computed from and the accepts go to.
	order    []int
	sent     bool
	refused  int
	accepted int
	value    Value
	wrote    bool
	err      error
	out      Outcome
}

// peer is what a round knows of one voter.
type peer struct {
	name string
	// promised: the voter promised (its incarnation and accepted value
	// below); refused: it said no before promising.
	promised, refused bool
	inc               uint64
	at                Ballot
	value             Value
	// sent: an accept went to this voter (naming inc); accepted: it said yes.
	sent, accepted bool
}

// Ballot returns the round's ballot.
func (r *Round) Ballot() Ballot { return r.ballot }

// Prepares returns the prepare messages, one per voter taking part.
func (r *Round) Prepares() []Message {
	k := KindPrepare
	if r.query {
		k = KindQuery
	}
	ms := make([]Message, 0, len(r.peers))
	for _, v := range r.peers {
		ms = append(ms, Message{Kind: k, From: r.p.cfg.Node, To: v.name, VoterHash: r.p.hash, Ballot: r.ballot})
	}
	return ms
}

// Outcome returns what the round has learned so far. While Pending,
// Outcome.Wrote says whether accepts carrying a write were sent already: a
// caller that gives up on the round now must treat the write as unknown.
func (r *Round) Outcome() Outcome {
	o := r.out
	o.Ballot = r.ballot
	if o.Status == Pending {
		o.Wrote = r.sent && r.wrote
	}
	return o
}

func (r *Round) quorum() int { return Quorum(len(r.p.cfg.Voters)) }

// Handle feeds one reply (Promise, Accepted or Nack) and returns the
// messages to send now: the accepts, once a quorum has promised. Replies for
// other ballots, from voters not taking part, duplicates and replies after
// the round ended are ignored. A reply for another voter list returns an
// error wrapping ErrVoterHash.
func (r *Round) Handle(m Message) ([]Message, error) {
	if m.VoterHash != r.p.hash {
		return nil, fmt.Errorf("%w: %s from %q has %s, %s has %s", ErrVoterHash, m.Kind, m.From, m.VoterHash, r.p.cfg.Node, r.p.hash)
	}
	switch m.Kind {
	case KindNack:
		if m.Reason != NackAhead { // there Seen is a limit, not a ballot in use
			r.p.Observe(m.Seen)
		}
	case KindPromise, KindReport:
		r.p.Observe(m.Accepted)
	}
	i := slices.IndexFunc(r.peers, func(p peer) bool { return p.name == m.From })
	if r.out.Status != Pending || m.Ballot != r.ballot || i < 0 {
		return nil, nil
	}
	if r.query {
		r.report(i, m)
		return nil, nil
	}
	switch m.Kind {
	case KindPromise:
		return r.promise(i, m), nil
	case KindAccepted:
		r.acceptedBy(i, m)
	case KindNack:
		r.nack(i, m)
	}
	return nil, nil
}

func (r *Round) promise(i int, m Message) []Message {
	p := &r.peers[i]
	if r.sent || p.refused || p.promised {
		return nil
	}
	p.promised, p.inc, p.at, p.value = true, m.Incarnation, m.Accepted, m.Value
	r.order = append(r.order, i)
	if len(r.order) < r.quorum() {
		return nil
	}
	var cur Value
	var at Ballot
	agree := true
	for _, j := range r.order {
		q := &r.peers[j]
		if at.Less(q.at) {
			at, cur = q.at, q.value
		}
		agree = agree && q.at == r.peers[r.order[0]].at
	}
	data, write, err := r.change(cur)
	r.value, r.err = cur, err
	if err == nil && write {
		r.value = Value{Version: cur.Version + 1, Written: r.ballot, Data: data}
		r.wrote = true
	}
	if !r.wrote && r.fastRead && r.readDone(agree, at) {
		// A read, or a refused change, whose promise quorum all accepted
		// the same ballot: that ballot's value is chosen already (a
		// quorum accepted it) and no value chosen before this round
		// began is newer (its quorum meets this one), so it is the
		// register's value now. No accept phase.
		r.out = Outcome{Status: Chosen, Value: cur, Err: err}
		return nil
	}
	r.sent = true
	ms := make([]Message, 0, len(r.order))
	for _, j := range r.order {
		q := &r.peers[j]
		q.sent = true
		ms = append(ms, Message{Kind: KindAccept, From: r.p.cfg.Node, To: q.name, VoterHash: r.p.hash,
			Ballot: r.ballot, Incarnation: q.inc, Value: r.value})
	}
	return ms
}

// report takes a query's answer (a Report, or a Nack from a recovering
// voter).
func (r *Round) report(i int, m Message) {
	p := &r.peers[i]
	if p.promised || p.refused {
		return
	}
	switch m.Kind {
	case KindReport:
		p.promised, p.at, p.value = true, m.Accepted, m.Value
		r.order = append(r.order, i)
	case KindNack:
		p.refused = true
		r.refused++
	default:
		return
	}
	highest := r.p.weakRead == readHighest || r.p.weakRead == queryHighest
	var best Ballot
	var cur Value
	for _, j := range r.order {
		q := &r.peers[j]
		n := 0
		for _, k := range r.order {
			if r.peers[k].at == q.at {
				n++
			}
		}
		if highest && len(r.order) >= r.quorum() && best.Less(q.at) {
			best, cur = q.at, q.value
		}
		if n >= r.quorum() && r.readDone(true, q.at) && !highest {
			r.out = Outcome{Status: Chosen, Value: q.value}
			return
		}
	}
	if highest && len(r.order) >= r.quorum() {
		r.out = Outcome{Status: Chosen, Value: cur}
		return
	}
	if len(r.order) == len(r.peers) {
		// Every voter answered with the zero ballot: no voter holds a
		// value, so none was chosen that survives; the register is empty.
		zero := true
		for _, j := range r.order {
			zero = zero && r.peers[j].at.IsZero()
		}
		if zero {
			r.out = Outcome{Status: Chosen}
			return
		}
	}
	if len(r.order)+r.refused == len(r.peers) {
		r.fail(false)
	}
}

// readDone reports whether a round that keeps the value may finish on its
// promises: the quorum agrees on one accepted ballot, and it is not the zero
// ballot. A quorum at the zero ballot has accepted nothing (or was
// re-initialised) while a value may survive on other voters: the accept
// phase must then make the empty register chosen above it, or a later read
// through those voters would see the old value again.
func (r *Round) readDone(agree bool, at Ballot) bool {
	switch r.p.weakRead {
	case readHighest:
		return true
	case readZero:
		return agree
	}
	return agree && !at.IsZero()
}

func (r *Round) acceptedBy(i int, m Message) {
	p := &r.peers[i]
	if !p.sent || p.inc != m.Incarnation || p.accepted {
		return
	}
	p.accepted = true
	r.accepted++
	if r.accepted >= r.quorum() {
		r.out = Outcome{Status: Chosen, Value: r.value, Wrote: r.wrote, Err: r.err}
	}
}

func (r *Round) nack(i int, m Message) {
	// A refusal naming our own ballot answers a duplicate prepare: that
	// acceptor did promise us (its promise may still arrive or be lost).
	dupPrepare := m.Reason == NackBallot && m.Seen == r.ballot
	if !dupPrepare && m.Reason != NackAhead {
		r.out.Seen = maxBallot(r.out.Seen, m.Seen)
	}
	p := &r.peers[i]
	if r.sent {
		if !p.sent || p.accepted || (dupPrepare && p.inc == m.Incarnation) {
			return
		}
		// The promiser refused the accept, or another incarnation answers for
		// it: this ballot cannot reach a quorum any more.
		r.fail(true)
		return
	}
	if p.promised || p.refused || dupPrepare {
		return
	}
	p.refused = true
	r.refused++
	if len(r.peers)-r.refused < r.quorum() {
		r.fail(false)
	}
}

func (r *Round) fail(sent bool) {
	r.out = Outcome{Status: Failed, Seen: r.out.Seen, Wrote: sent && r.wrote}
}
