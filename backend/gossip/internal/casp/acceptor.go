package casp

import (
	"errors"
	"fmt"
	"slices"
)

// ErrNotRecovering: Recover or Reinitialize was called on an acceptor that
// already answers.
var ErrNotRecovering = errors.New("casp: acceptor is not recovering")

// ErrNotBlank: NewElection was called on an acceptor that is not Blank.
var ErrNotBlank = errors.New("casp: acceptor is not blank")

// ErrHeld: Recover or Reinitialize was called on a held acceptor (see
// [Acceptor.Hold]).
var ErrHeld = errors.New("casp: acceptor is held")

// State is what an acceptor persists.
type State struct {
	// Promised is the highest ballot promised: the promise floor.
	Promised Ballot `json:"promised"`
	// HasRecord says Accepted and Value are stored too. Without it a
	// restarted acceptor knows its floor but must recover its record.
	HasRecord bool   `json:"hasRecord,omitempty"`
	Accepted  Ballot `json:"accepted,omitzero"`
	Value     Value  `json:"value,omitzero"`
}

// Storage keeps an acceptor's state across restarts. Save must be durable
// when it returns (write, fsync, rename): the acceptor calls it before it
// returns the reply that depends on it, and the caller sends that reply only
// after Handle returns. A nil Storage keeps everything in memory.
type Storage interface {
	// Load returns the state saved last; ok is false if none was saved.
	Load() (st State, ok bool, err error)
	// Save stores st durably.
	Save(st State) error
}

// AcceptorConfig configures an acceptor process.
type AcceptorConfig struct {
	// Name is this voter's node name; it must be in Voters.
	Name string
	// Voters is the static voter list.
	Voters []string
	// Incarnation identifies this process: random, fresh at every start
	// (crypto/rand in the glue). Accepts naming another incarnation are
	// refused, so a restarted voter never completes a round its earlier self
	// promised.
	Incarnation uint64
	// Storage, if set, persists the promise (and, with PersistRecord, the
	// accepted record) before each reply.
	Storage Storage
	// PersistRecord saves the accepted record with the promise, so a
	// restarted voter answers at once. Without it only the promise floor is
	// saved (a few bytes per promise, none per accept) and a restarted voter
	// recovers its record from the others.
	PersistRecord bool
	// MaxAhead, if non-zero, bounds ballot counters to the acceptor's clock:
	// a prepare whose counter exceeds now+MaxAhead is refused. A voter that
	// starts without a saved promise then takes Now+MaxAhead as its floor,
	// assuming its clock did not step back across the restart. Zero disables
	// the bound; a voter without a saved promise then has no floor and can
	// only be re-initialised.
	MaxAhead uint64
	// Now is the clock at start, in the ballot counter's unit (Unix
	// milliseconds in the glue). Used only with MaxAhead.
	Now uint64
}

// Acceptor is one voter's acceptor: it promises and accepts. It is not safe
// for concurrent use; the glue serialises calls.
type Acceptor struct {
	cfg   AcceptorConfig
	hash  string
	ready bool
	// floor is what a recovery round must exceed; known is false when the
	// acceptor has neither a saved promise nor a clock bound.
	floor      Ballot
	floorKnown bool
	promised   Ballot
	accepted   Ballot
	value      Value
	// blank: see Blank.
	blank bool
	// quietUntil: see NewElection.
	quietUntil uint64
	// held: another live process may answer as this voter (see Hold).
	held bool

	weak weakening
}

// weakening switches off one safety rule; only the tests' exhaustive search
// sets it, to prove the rule is needed.
type weakening struct {
	// acceptAnyIncarnation: accept any ballot at or above the promise,
	// whatever incarnation promised it, and accept while recovering (rule a).
	acceptAnyIncarnation bool
	// answerAtOnce: a restarted acceptor answers at once with an empty
	// record (rule b).
	answerAtOnce bool
	// ignoreFloor: recovery rounds may use any ballot (floor zero); the
	// search also restarts the voter without its saved promise.
	ignoreFloor bool
	// answerOwnRecovery: a recovering acceptor takes part in its own
	// recovery round (with Proposer.ownVote: rule c).
	answerOwnRecovery bool
}

// answers reports whether the acceptor answers m at all.
func (a *Acceptor) answers(now uint64, m Message) bool {
	if a.ready {
		// Quiet after a new election: recovery rounds and queries only.
		return now >= a.quietUntil || m.Recovery || m.Kind == KindQuery
	}
	return a.weak.answerAtOnce || (a.weak.answerOwnRecovery && m.From == a.cfg.Name)
}

// NewAcceptor starts an acceptor process. If cfg.Storage holds a state with
// the record, it answers at once; otherwise it is recovering (Ready is false)
// until [Acceptor.Recover] or [Acceptor.Reinitialize].
func NewAcceptor(cfg AcceptorConfig) (*Acceptor, error) {
	if err := ValidateVoters(cfg.Voters); err != nil {
		return nil, err
	}
	if !slices.Contains(cfg.Voters, cfg.Name) {
		return nil, fmt.Errorf("acceptor name %q: not in voters %v", cfg.Name, cfg.Voters)
	}
	a := &Acceptor{cfg: cfg, hash: VoterHash(cfg.Voters)}
	a.cfg.Voters = slices.Clone(cfg.Voters)
	if cfg.MaxAhead > 0 {
		a.floor = Ballot{Counter: cfg.Now + cfg.MaxAhead}
		a.floorKnown = true
	}
	if cfg.Storage != nil {
		st, ok, err := cfg.Storage.Load()
		if err != nil {
			return nil, fmt.Errorf("acceptor %s: load state: %w", cfg.Name, err)
		}
		a.blank = !ok
		if ok {
			a.promised = st.Promised
			a.floor = maxBallot(a.floor, st.Promised)
			a.floorKnown = true
			if st.HasRecord && cfg.PersistRecord {
				a.accepted, a.value, a.ready = st.Accepted, st.Value, true
			}
		}
	}
	return a, nil
}

// Ready reports whether the acceptor answers prepares and accepts.
func (a *Acceptor) Ready() bool { return a.ready && !a.held }

// Blank reports whether this incarnation is a new voter that has taken no
// part in any round that may write: its Storage held no state at start,
// it has answered no Prepare or Accept but those of recovery rounds
// ([Message.Recovery]; answered, or refused for its promise), and it holds
// the empty value. Without Storage it is never blank: a voter that keeps
// nothing cannot tell a first start from a restart. The glue's
// new-election shortcut rests on it (see [Acceptor.NewElection]).
func (a *Acceptor) Blank() bool { return a.blank }

// Held reports whether the acceptor is held (see Hold).
func (a *Acceptor) Held() bool { return a.held }

// Hold silences the acceptor until [Acceptor.Release]: it answers nothing,
// and neither recovers nor is re-initialised. The glue holds it while
// another live process claims this voter's name: two processes answering
// as one voter break quorum intersection (two proposers could each count
// "this voter" in disjoint quorums). It is no longer Blank: the other
// process may have answered any round.
func (a *Acceptor) Hold() { a.held, a.blank = true, false }

// Release ends a hold as a restart at now would begin, the other process
// being gone: with Storage, the acceptor reloads what is saved (the other
// process may have been the last to save) and answers at once if that is
// the record; otherwise it forgets its record and recovers above a floor
// that is above its own promise, above (the glue passes its proposer's
// highest ballot, so that no recovery round started before the release
// can end it) and, with MaxAhead, above now+MaxAhead (every ballot the
// other process ever promised, as for a restart). If loading fails, the
// acceptor stays held.
func (a *Acceptor) Release(now uint64, above Ballot) error {
	if !a.held {
		return nil
	}
	var st State
	var saved bool
	if a.cfg.Storage != nil {
		var err error
		if st, saved, err = a.cfg.Storage.Load(); err != nil {
			return fmt.Errorf("acceptor %s: load state: %w", a.cfg.Name, err)
		}
	}
	if saved && st.HasRecord && a.cfg.PersistRecord {
		a.promised = maxBallot(a.promised, st.Promised)
		a.floor, a.floorKnown = maxBallot(a.floor, a.promised), true
		a.accepted, a.value, a.ready, a.held = st.Accepted, st.Value, true, false
		return nil
	}
	floor := maxBallot(maxBallot(a.promised, st.Promised), maxBallot(a.floor, above))
	if a.cfg.MaxAhead > 0 {
		floor = maxBallot(floor, Ballot{Counter: now + a.cfg.MaxAhead})
	}
	if err := a.save(State{Promised: floor}, true); err != nil {
		return err
	}
	a.promised, a.floor, a.floorKnown = floor, floor, a.floorKnown || saved
	a.accepted, a.value, a.ready, a.held = Ballot{}, Value{}, false, false
	return nil
}

// Floor returns the ballot a recovery round must exceed, and false if no
// recovery round may run: the acceptor answers already, is held, or has
// no floor (no saved promise and no clock bound; such a voter cannot
// recover, only be re-initialised).
func (a *Acceptor) Floor() (Ballot, bool) {
	if a.held || (a.ready && !a.weak.answerAtOnce) {
		return Ballot{}, false
	}
	if a.weak.ignoreFloor {
		return Ballot{}, true
	}
	return a.floor, a.floorKnown
}

// State returns the acceptor's current state (promise and record).
func (a *Acceptor) State() State {
	return State{Promised: a.promised, HasRecord: a.ready, Accepted: a.accepted, Value: a.value}
}

// Handle processes a Prepare, an Accept or a Query received at time now (same unit as
// ballot counters; ignored without MaxAhead) and returns the reply to send to
// m.From. If the reply depends on new state, Storage.Save has returned
// before Handle returns; if Save fails, the state is unchanged, the error is
// returned and nothing must be sent. A message for another voter list
// returns an error wrapping ErrVoterHash. Other kinds are ignored (nil, nil).
func (a *Acceptor) Handle(now uint64, m Message) (*Message, error) {
	if m.VoterHash != a.hash {
		return nil, fmt.Errorf("%w: %s from %q has %s, %s has %s", ErrVoterHash, m.Kind, m.From, m.VoterHash, a.cfg.Name, a.hash)
	}
	if m.To != a.cfg.Name || a.held {
		return nil, nil
	}
	write := m.Kind == KindPrepare || m.Kind == KindAccept
	if write && m.New && a.ready {
		// Every voter answered the proof this write was made on ready:
		// the new election has no one left to wait for.
		a.quietUntil = 0
	}
	if write && !m.Recovery && a.answers(now, m) {
		a.blank = false
	}
	var r *Message
	var err error
	switch m.Kind {
	case KindPrepare:
		r, err = a.prepare(now, m)
	case KindAccept:
		r, err = a.accept(now, m)
	case KindQuery:
		if !a.answers(now, m) {
			r = a.nack(m, NackRecovering, Ballot{})
			break
		}
		r = a.reply(m, KindReport)
		r.Accepted, r.Value = a.accepted, a.value
	}
	if r != nil {
		r.Blank = a.blank
	}
	return r, err
}

func (a *Acceptor) reply(m Message, k Kind) *Message {
	return &Message{Kind: k, From: a.cfg.Name, To: m.From, VoterHash: a.hash, Ballot: m.Ballot, Incarnation: a.cfg.Incarnation}
}

func (a *Acceptor) nack(m Message, r NackReason, seen Ballot) *Message {
	n := a.reply(m, KindNack)
	n.Reason, n.Seen = r, seen
	return n
}

func (a *Acceptor) prepare(now uint64, m Message) (*Message, error) {
	if !a.answers(now, m) {
		return a.nack(m, NackRecovering, Ballot{}), nil
	}
	if a.cfg.MaxAhead > 0 && m.Ballot.Counter > now+a.cfg.MaxAhead {
		return a.nack(m, NackAhead, Ballot{Counter: now + a.cfg.MaxAhead}), nil
	}
	if !a.promised.Less(m.Ballot) {
		return a.nack(m, NackBallot, a.promised), nil
	}
	if err := a.save(State{Promised: m.Ballot, HasRecord: true, Accepted: a.accepted, Value: a.value}, true); err != nil {
		return nil, err
	}
	a.promised = m.Ballot
	r := a.reply(m, KindPromise)
	r.Accepted, r.Value = a.accepted, a.value
	return r, nil
}

func (a *Acceptor) accept(now uint64, m Message) (*Message, error) {
	if a.answers(now, m) && m.Incarnation == a.cfg.Incarnation && !m.Ballot.IsZero() && a.accepted == m.Ballot && a.value.Equal(m.Value) {
		// A duplicate: the same ballot always carries the same value. If
		// the next ballot it asked for is still the promise, nothing was
		// accepted since: say so again.
		r := a.reply(m, KindAccepted)
		if !m.Next.IsZero() && a.promised == m.Next {
			r.Next = m.Next
		}
		return r, nil
	}
	ok := a.answers(now, m) && m.Incarnation == a.cfg.Incarnation && m.Ballot == a.promised
	if a.weak.acceptAnyIncarnation {
		ok = !m.Ballot.Less(a.promised)
	}
	if !ok {
		if !a.answers(now, m) {
			return a.nack(m, NackRecovering, Ballot{}), nil
		}
		return a.nack(m, NackBallot, a.promised), nil
	}
	if a.accepted == m.Ballot {
		if a.value.Equal(m.Value) {
			// A duplicate (weakened rules only reach here).
			return a.reply(m, KindAccepted), nil
		}
		// One ballot carries one value: another value at the ballot
		// accepted is refused, never acknowledged while this voter
		// keeps the first (a vote never cast).
		return a.nack(m, NackBallot, a.promised), nil
	}
	promised := maxBallot(a.promised, m.Ballot)
	// The next round's prepare, carried by this accept: promised with the
	// acceptance, in one step, so the promise reports exactly this value.
	next := promised.Less(m.Next) && (a.cfg.MaxAhead == 0 || m.Next.Counter <= now+a.cfg.MaxAhead)
	if next {
		promised = m.Next
	}
	if err := a.save(State{Promised: promised, HasRecord: true, Accepted: m.Ballot, Value: m.Value}, next); err != nil {
		return nil, err
	}
	a.promised = promised
	a.accepted, a.value = m.Ballot, m.Value
	a.blank = a.blank && m.Value.IsEmpty()
	r := a.reply(m, KindAccepted)
	if next {
		r.Next = m.Next
	}
	return r, nil
}

// save persists st if storage is configured; promiseChanged says whether the
// floor moved (a floor-only storage is written only then).
func (a *Acceptor) save(st State, promiseChanged bool) error {
	if a.cfg.Storage == nil {
		return nil
	}
	if !a.cfg.PersistRecord {
		if !promiseChanged {
			return nil
		}
		st = State{Promised: st.Promised}
	}
	if err := a.cfg.Storage.Save(st); err != nil {
		return fmt.Errorf("acceptor %s: save state: %w", a.cfg.Name, err)
	}
	return nil
}

// Recover ends recovery with the outcome of this voter's recovery round (see
// [Proposer.Recover]): the acceptor adopts the round's ballot as its promise
// and the chosen value as its accepted record, and starts answering. The
// outcome must be Chosen and its ballot above Floor.
func (a *Acceptor) Recover(o Outcome) error {
	if a.held {
		return fmt.Errorf("acceptor %s: %w", a.cfg.Name, ErrHeld)
	}
	if a.ready && !a.weak.answerAtOnce {
		return fmt.Errorf("acceptor %s: %w", a.cfg.Name, ErrNotRecovering)
	}
	if o.Status != Chosen {
		return fmt.Errorf("acceptor %s: recovery round not chosen (%s)", a.cfg.Name, o.Status)
	}
	if floor, ok := a.Floor(); !ok || !floor.Less(o.Ballot) {
		return fmt.Errorf("acceptor %s: recovery ballot %s not above floor %s", a.cfg.Name, o.Ballot, floor)
	}
	p := maxBallot(a.promised, o.Ballot)
	if err := a.save(State{Promised: p, HasRecord: true, Accepted: o.Ballot, Value: o.Value}, true); err != nil {
		return err
	}
	a.promised, a.accepted, a.value, a.ready = p, o.Ballot, o.Value, true
	a.blank = a.blank && o.Value.IsEmpty()
	return nil
}

// Reinitialize makes a recovering acceptor answer with an empty register,
// promised up to its floor (if known). This forgets every write: the glue
// calls it only after a full restart, when no voter has seen a quorum for
// LeaseDuration + RenewDeadline (so any earlier leader has stepped down),
// and logs and counts it. The elector then sees the record as deleted.
// Values from before the re-initialisation that survive on other voters keep
// their ballots and win over the empty register wherever a quorum includes
// them; Value.Written keeps their tokens from ever matching a new write.
func (a *Acceptor) Reinitialize() error {
	if a.held {
		return fmt.Errorf("acceptor %s: %w", a.cfg.Name, ErrHeld)
	}
	if a.ready {
		return fmt.Errorf("acceptor %s: %w", a.cfg.Name, ErrNotRecovering)
	}
	p := maxBallot(a.promised, a.floor)
	if err := a.save(State{Promised: p, HasRecord: true}, true); err != nil {
		return err
	}
	a.promised, a.accepted, a.value, a.ready = p, Ballot{}, Value{}, true
	return nil
}

// NewElection is Reinitialize without the wait, for a new election: the
// glue calls it when this acceptor is Blank and every other voter answered
// one of its recovery rounds Blank. It refuses (ErrNotBlank) if this acceptor is
// not Blank, and it stays Blank. It can forget a chosen write only if every
// voter of the quorum that promised that write's ballot has restarted with
// an empty Storage since (docs/backends/gossip.md, "A new election").
//
// Until now+quiet (Handle's clock) it answers only recovery rounds and
// queries, and refuses other rounds as recovering: the other voters, still
// recovering, take the shortcut through it meanwhile, while a writer's
// round, answered, would end its blankness and leave them waiting
// ReinitializeAfter. A write marked [Message.New] ends the quiet time at
// once: it was made on a proof that every voter answered ready.
func (a *Acceptor) NewElection(now, quiet uint64) error {
	if !a.blank {
		return fmt.Errorf("acceptor %s: %w", a.cfg.Name, ErrNotBlank)
	}
	if err := a.Reinitialize(); err != nil {
		return err
	}
	a.quietUntil = now + quiet
	return nil
}
