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
	// ready is a prepare phase done in advance for ballot last: by the
	// accepts of this proposer's last chosen round, or handed over by a
	// releasing one (Adopt). Start spends it on a write.
	ready *Prepared

	// ownVote lets a recovery round count its own acceptor (rule c); only
	// the tests' exhaustive search sets it.
	ownVote bool
	// weakRead answers a round that keeps the value from its promises
	// without the agreement the read rule asks for; only the tests set it,
	// to show the simulation catches it.
	weakRead weakReadRule
	// weakNew weakens the proof of a new register; only the tests set it.
	weakNew weakNewRule
	// adoptAny lets Adopt take a hand-over at or below the highest ballot
	// used or seen (so one delivered twice is adopted twice); only the
	// tests' exhaustive search sets it, to show the check is needed.
	adoptAny bool
	// weakStall weakens the stall rule (see Round.Replace) to replace only
	// rounds that skipped their prepare phase; only the tests set it, to
	// show the simulation catches it.
	weakStall bool
}

// weakNewRule names a weakening of the proof that the register is new
// (see Round.report).
type weakNewRule uint8

const (
	newRuleShipped weakNewRule = iota
	// newFromQuorum: a quorum of blank voters reporting the empty
	// register proves it new, the others unheard.
	newFromQuorum
	// newWithoutBlank: every voter reporting the empty register proves
	// it new, blank or not.
	newWithoutBlank
)

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

// Last returns the highest ballot this proposer has used, reserved or
// seen: its next round goes above it.
func (p *Proposer) Last() Ballot { return p.last }

// Start begins a round that applies change. now is the caller's clock in the
// ballot counter's unit (it may be zero without clock-bounded floors): the
// round's counter is at least now and above every ballot seen. Send
// [Round.Prepares] to every voter.
//
// The one-round-trip optimisation (CASPaxos §2.2.1): the accepts of a
// round carry the prepare of this proposer's next ballot, which the
// acceptors promise in the same step as they accept (see [Message]). If a
// quorum did so, the next Start whose change writes on the value chosen
// skips the prepare phase: [Round.Prepares] then returns the accepts, at
// that ballot, to that quorum. It is spent once, and only if no higher
// ballot was seen since; a change that does not write on it (a conflict,
// a read) runs a full round instead, since the value may be stale.
func (p *Proposer) Start(now uint64, change Change) *Round {
	if r := p.startPrepared(change); r != nil {
		return r
	}
	return p.start(now, Ballot{}, "", change, true)
}

// StartNew is Start for a write made on a proof that the register is new
// (a query's [Outcome.New]): its prepares and accepts carry
// [Message.New], which ends the quiet time of voters that started a new
// election ([Acceptor.NewElection]). That serves liveness only: the proof
// saw every voter ready, so no voter of the new election is left to
// follow it. The change must still refuse any value but the empty
// register, since a write chosen after the proof may be another
// candidate's.
func (p *Proposer) StartNew(now uint64, change Change) *Round {
	r := p.Start(now, change)
	r.onNew = true
	return r
}

// Prepared is a prepare phase done in advance: a quorum of voters
// promised Ballot, each having accepted Value, at ballot At, last.
type Prepared struct {
	Ballot Ballot
	At     Ballot
	Value  Value
	Voters []PreparedVoter
}

// PreparedVoter is one voter that promised a Prepared ballot, and the
// acceptor incarnation that did.
type PreparedVoter struct {
	Name        string `json:"n"`
	Incarnation uint64 `json:"i"`
}

// startPrepared spends the prepared ballot, if any, on change.
func (p *Proposer) startPrepared(change Change) *Round {
	rd := p.ready
	p.ready = nil
	if rd == nil || rd.Ballot != p.last {
		return nil // a higher ballot was seen: the promises are broken
	}
	data, write, err := change(rd.Value)
	if err != nil || !write {
		return nil
	}
	r := &Round{p: p, ballot: rd.Ballot, change: change, fastRead: true, prepared: true}
	p.last = Ballot{Counter: rd.Ballot.Counter + 1, Node: p.cfg.Node, Incarnation: p.cfg.Incarnation} // reserved, as in start
	for _, v := range p.cfg.Voters {
		r.peers = append(r.peers, peer{name: v})
	}
	for _, pv := range rd.Voters {
		i := slices.IndexFunc(r.peers, func(q peer) bool { return q.name == pv.Name })
		if i < 0 || r.peers[i].promised {
			return nil
		}
		q := &r.peers[i]
		q.promised, q.inc, q.at, q.value = true, pv.Incarnation, rd.At, rd.Value
		r.order = append(r.order, i)
	}
	if len(r.order) < r.quorum() {
		return nil
	}
	r.value = Value{Version: rd.Value.Version + 1, Written: r.ballot, Data: data}
	r.wrote = true
	return r
}

// DropPrepared forgets a prepare phase done in advance: the next round is
// a full one.
func (p *Proposer) DropPrepared() { p.ready = nil }

// Adopt takes a prepare phase a releasing proposer ran for this one (see
// [Proposer.StartFor]): the next Start that writes on its value spends it.
// It reports false, and changes nothing, unless the ballot is this
// proposer's own (its node and incarnation) and above every ballot it has
// used or seen: a ballot is never spent twice, even if the hand-over is
// delivered twice.
func (p *Proposer) Adopt(rd Prepared) bool {
	if rd.Ballot.Node != p.cfg.Node || rd.Ballot.Incarnation != p.cfg.Incarnation || (!p.last.Less(rd.Ballot) && !p.adoptAny) ||
		len(rd.Voters) < Quorum(len(p.cfg.Voters)) {
		return false
	}
	p.last = rd.Ballot
	p.ready = &rd
	return true
}

// StartFor is Start, where the round's accepts carry the prepare of a
// ballot of another proposer instead of this one's: a release that hands
// the next round's prepare phase over. The hand-over counts only voters
// other than this proposer's own node (a releasing leader usually exits). heir is asked, once the value the
// accepts carry is known, for that proposer's node name and process
// incarnation; "" or 0 (or this proposer's own name) keeps this
// proposer's. If the round is chosen and a quorum promised the heir's
// ballot, Outcome.Prepared is that phase, for the heir's [Proposer.Adopt].
func (p *Proposer) StartFor(now uint64, change Change, heir func(v Value) (node string, inc uint64)) *Round {
	r := p.Start(now, change)
	r.heirOf, r.now = heir, now
	return r
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
// voter reports the empty register (at whatever ballot: the recovery
// rounds of a new election leave it at theirs): then no voter holds a
// value and the register is empty. If every voter also said it was blank
// ([Acceptor.Blank]), the register is new ([Outcome.New]); while that is
// still possible ([Round.MayBeNew]) the query waits for every voter
// rather than end on a quorum that agrees on the empty register.
// The query fails once every voter has answered without such a quorum; the caller
// then reads by a round ([Proposer.Start] with [Read]), as it does when the
// query takes too long (a voter down, reports that disagree because a
// write is in flight).
func (p *Proposer) Query(now uint64) *Round {
	r := p.start(now, Ballot{}, "", Read, false)
	r.query = true
	// A query sends no accepts, so it asks no voter to promise the
	// ballot start reserved above its own: give it back, so that a
	// hand-over at that ballot (see [Proposer.StartFor]), run by a
	// release while this proposer read, can still be adopted.
	p.last = r.ballot
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
	r := p.start(now, floor, exclude, Read, false)
	r.recovery = true
	return r
}

func (p *Proposer) start(now uint64, above Ballot, exclude string, change Change, fastRead bool) *Round {
	c := max(p.last.Counter+1, now, above.Counter+1)
	b := Ballot{Counter: c, Node: p.cfg.Node, Incarnation: p.cfg.Incarnation}
	// Reserve the ballot above too: it is this round's next (its accepts
	// ask the voters to promise it), so no other round of this proposer,
	// even one started while this one runs, may use it.
	p.last = Ballot{Counter: c + 1, Node: p.cfg.Node, Incarnation: p.cfg.Incarnation}
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
	// Prepared, when Chosen by a round started with StartFor, is the
	// prepare phase its accepts ran for the heir (nil if too few voters
	// promised it).
	Prepared *Prepared
	// New, when Chosen by a query, says the register is new: every voter
	// reported the empty register and said it was blank
	// ([Acceptor.Blank]). Then no write was chosen before the query
	// began, unless every voter that accepted it has restarted with an
	// empty Storage since (docs/backends/gossip.md, "A new lock").
	New bool
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
	// recovery: a voter's recovery round (see Proposer.Recover).
	recovery bool
	// onNew: a write made on a proof that the register is new (see
	// Proposer.StartNew).
	onNew bool
	// prepared: the round spends a prepare phase done in advance; it
	// starts with its accepts.
	prepared bool
	// heirOf, if set, names the proposer (node, incarnation) whose
	// ballot the accepts ask to be promised, instead of this proposer's
	// next; heir is its answer.
	heirOf func(Value) (string, uint64)
	heir   *Ballot
	now    uint64 // the clock StartFor was called at
	// next is the ballot the accepts ask to be promised (zero: none).
	next Ballot
	// samePromise: a voter refused a prepare having promised this ballot
	// without a promise reaching this round (see Stalled).
	samePromise bool
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
	// blank: its report or refusal (a query's) said it was blank.
	blank bool
	inc   uint64
	at    Ballot
	value Value
	// sent: an accept went to this voter (naming inc); accepted: it said yes.
	sent, accepted bool
	// nextOK: with its acceptance it promised the round's next ballot.
	nextOK bool
}

// Ballot returns the round's ballot.
func (r *Round) Ballot() Ballot { return r.ballot }

// SkipsPrepare reports whether the round spends a prepare phase done in
// advance (see [Proposer.Start]): its accepts go only to the voters that
// promised, so one of them down stalls it; the stall rule
// ([Round.Replace]) replaces it by a full round at the driver's next
// tick.
func (r *Round) SkipsPrepare() bool { return r.prepared }

// Stalled reports whether a pending round cannot expect to finish by
// waiting: it skipped its prepare phase (its accepts went only to the
// voters that promised, and one is silent), a voter refused it for a
// higher ballot, or a voter refused a prepare because it had promised this
// very ballot without reporting to this round (a duplicate whose promise
// was lost, or a promise made through another round's accept). The stall
// rule ([Round.Replace]) abandons it and starts a full round.
func (r *Round) Stalled() bool {
	return r.out.Status == Pending && (r.prepared || r.ballot.Less(r.out.Seen) || r.samePromise)
}

// Abandon ends a pending round as Failed, as a refusal would: its write,
// if accepts carrying it went out, is of unknown outcome.
func (r *Round) Abandon() {
	if r.out.Status == Pending {
		r.fail(r.sent)
	}
}

// Prepares returns the prepare messages, one per voter taking part.
func (r *Round) Prepares() []Message {
	if r.prepared {
		return r.accepts()
	}
	k := KindPrepare
	if r.query {
		k = KindQuery
	}
	ms := make([]Message, 0, len(r.peers))
	for _, v := range r.peers {
		ms = append(ms, Message{Kind: k, From: r.p.cfg.Node, To: v.name, VoterHash: r.p.hash, Ballot: r.ballot, Recovery: r.recovery, New: r.onNew})
	}
	return ms
}

// Outcome returns what the round has learned so far. While Pending,
// Outcome.Wrote says whether accepts carrying a write were sent already: a
// caller that gives up on the round now must treat the write as unknown.
func (r *Round) Outcome() Outcome {
	o := r.out
	o.Ballot = r.ballot
	if o.Prepared != nil {
		c := *o.Prepared
		o.Prepared = &c
	}
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
	return r.accepts()
}

// accepts marks the accept phase begun and returns its messages, to the
// promisers. A round that is not a recovery round asks, with them, for the
// promise of the next ballot (this proposer's, or the heir's).
func (r *Round) accepts() []Message {
	r.sent = true
	if r.heirOf != nil && r.wrote {
		if node, inc := r.heirOf(r.value); node != "" && node != r.p.cfg.Node && inc != 0 {
			r.heir = &Ballot{Node: node, Incarnation: inc}
		}
	}
	if r.fastRead {
		r.next = Ballot{Counter: r.ballot.Counter + 1, Node: r.p.cfg.Node, Incarnation: r.p.cfg.Incarnation}
		if r.heir != nil {
			// Above the releaser's clock, with a millisecond to
			// spare: the heir's last reads (queries, at a counter no
			// higher than its clock or one above a ballot it saw)
			// came before, and it adopts only a ballot above all it
			// used.
			r.next = Ballot{Counter: max(r.ballot.Counter+1, r.now+2), Node: r.heir.Node, Incarnation: r.heir.Incarnation}
		}
		// Never used for a full round of this proposer: a later Start
		// goes above it.
		r.p.last = maxBallot(r.p.last, r.next)
	}
	ms := make([]Message, 0, len(r.order))
	for _, j := range r.order {
		q := &r.peers[j]
		q.sent = true
		ms = append(ms, Message{Kind: KindAccept, From: r.p.cfg.Node, To: q.name, VoterHash: r.p.hash,
			Ballot: r.ballot, Incarnation: q.inc, Value: r.value, Next: r.next, Recovery: r.recovery, New: r.onNew})
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
	p.blank = m.Blank
	if len(r.order) == len(r.peers) {
		// Every voter reported the empty register: no voter holds a
		// value, so none that was chosen survives; the register is
		// empty. If every voter is blank too, it is new.
		empty, blank := true, true
		for _, j := range r.order {
			empty = empty && r.peers[j].value.IsEmpty()
			blank = blank && r.peers[j].blank
		}
		if empty {
			r.out = Outcome{Status: Chosen, New: blank || r.p.weakNew == newWithoutBlank}
			return
		}
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
			if q.value.IsEmpty() && r.MayBeNew() {
				// The proof needs every voter: wait for the others.
				break
			}
			r.out = Outcome{Status: Chosen, Value: q.value}
			return
		}
	}
	if highest && len(r.order) >= r.quorum() {
		r.out = Outcome{Status: Chosen, Value: cur}
		return
	}
	if r.p.weakNew == newFromQuorum && len(r.order) >= r.quorum() && r.MayBeNew() {
		r.out = Outcome{Status: Chosen, New: true}
		return
	}
	if len(r.order)+r.refused == len(r.peers) {
		r.fail(false)
	}
}

// MayBeNew reports whether a query's answers so far leave open a proof
// that the register is new ([Outcome.New]): every voter that answered,
// recovering or not, said it was blank and reported the empty register.
// It is true before any answer. A caller whose query ends without an
// answer (voters still recovering, or slow) while this holds may query
// again rather than read by a round, whose prepares would end the voters'
// blankness, and with it the proof.
func (r *Round) MayBeNew() bool {
	if !r.query {
		return false
	}
	for _, p := range r.peers {
		if (p.promised || p.refused) && (!p.blank || !p.value.IsEmpty()) {
			return false
		}
	}
	return true
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
	p.nextOK = !r.next.IsZero() && m.Next == r.next
	r.accepted++
	if r.accepted < r.quorum() {
		return
	}
	r.out = Outcome{Status: Chosen, Value: r.value, Wrote: r.wrote, Err: r.err}
	rd := Prepared{Ballot: r.next, At: r.ballot, Value: r.value}
	for _, q := range r.peers {
		// A hand-over leaves out this proposer's own acceptor: a leader
		// that releases is usually about to exit, and the heir's round,
		// sent only to the voters in the hand-over, would wait for it.
		if q.accepted && q.nextOK && (r.heir == nil || q.name != r.p.cfg.Node) {
			rd.Voters = append(rd.Voters, PreparedVoter{Name: q.name, Incarnation: q.inc})
		}
	}
	if len(rd.Voters) < r.quorum() {
		return
	}
	if r.heir != nil {
		r.out.Prepared = &rd
	} else if r.p.last == r.next {
		r.p.ready = &rd
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
	if p.promised || p.refused {
		return
	}
	if dupPrepare {
		r.samePromise = true
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
