package casp

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"math/bits"
	"slices"
	"strings"
)

// The exhaustive search: every interleaving of 3 voters (a, b, c), two
// client proposers (p writes "x", q writes "y", each followed by the
// number of the client's round, on top of the value its round found: no
// two rounds write the same data, so a ballot spent twice shows as two
// values at one ballot) and one amnesiac restart of
// voter a at any step, with the restarted voter's recovery round as a third
// proposer. Messages live in a set that only grows, so any message can be
// delivered at any time, any number of times, in any order, or never:
// delay, reordering, duplication and loss. Ballots are bounded by
// maxCounter and each proposer runs a bounded number of rounds, starting
// each at any counter it may use (a proposer can abandon a round at any
// time, as on a timeout).
//
// Accepts carry the prepare of the proposer's next ballot (the one-round-
// trip optimisation); each is delivered both as sent and without it (as an
// acceptor whose clock bound refuses the next ballot handles it). A client
// whose round was chosen with a quorum of those promises spends them on its
// next round, which starts with its accepts. q's rounds hand their next
// prepare over to p instead (Proposer.StartFor, the way a release does),
// delivered to p as a message like any other.
//
// One reduction keeps the space small without losing behaviours: nacks are
// never delivered (every nack lost is a real schedule; a nack only narrows a
// proposer's choices).
//
// Voter a is the only one restarted: the voters are symmetric.
//
// The invariant, checked after every acceptance: a value is chosen at a
// ballot when a quorum of voters accepted that ballot; for any two chosen
// ballots b1 < b2 with a non-empty value v1 at b1, the value at b2 is v1 (the
// same write: same data, version and writing ballot) or a write made on top
// of it, directly or through others: every write's data names the value it
// was made on, so the chain of writes is in the data. Anything else (a
// write made on an older value, or the empty register after a write) is a
// lost write.

var (
	searchVoters = []string{"a", "b", "c"}
	searchSeed   = maphash.MakeSeed()
)

type searchRules struct {
	name    string
	weak    weakening
	ownVote bool // the recovery round counts the recovering voter's own acceptor
	// adoptAny: p adopts a hand-over whatever ballots it used or saw
	// before (Proposer.adoptAny).
	adoptAny bool
}

type searchBounds struct {
	maxCounter     uint64
	clientRounds   [2]int // rounds p and q may start
	recoveryRounds int
	maxDepth       int  // 0: unbounded
	noRestart      bool // voter a never restarts
}

type vote struct {
	ballot Ballot
	mask   uint8
	value  Value
}

type slot struct {
	p      Proposer
	r      *Round
	rounds int
}

// world is one state of the search. Rounds and votes are shared between a
// state and its successors until one of them changes (copy on write).
type world struct {
	acc       [3]Acceptor
	slots     [3]slot // p, q, and the recovery proposer of the restarted voter a
	restarted bool
	msgs      msgSet
	votes     []vote // sorted by ballot
}

// kindGift is the search's message that hands a Prepared from q to p; its
// Incarnation indexes searcher.gifts.
const kindGift Kind = 100

// msgSet is the set of messages ever sent, as bits over the searcher's
// table of distinct messages.
type msgSet [16]uint64

func (w *world) clone() *world {
	c := *w // rounds stay shared: a writer calls round first
	return &c
}

// round returns slot i's round, copied so it can change.
func (w *world) round(i int) *Round {
	w.slots[i].r = w.slots[i].r.clone(&w.slots[i].p)
	return w.slots[i].r
}

// floorStore is the restarted voter's disk when only its promise floor
// survived.
type floorStore struct{ promised Ballot }

func (f floorStore) Load() (State, bool, error) { return State{Promised: f.promised}, true, nil }
func (floorStore) Save(State) error             { return nil }

type searcher struct {
	rules   searchRules
	bounds  searchBounds
	visited map[uint64]int // state → smallest depth it was expanded at
	states  int
	trace   []func() string
	found   []string
	why     string
	buf     []byte
	table   []Message      // every distinct message sent, by id
	ids     map[string]int // encoded message → id
	gifts   []Prepared     // the prepare phases q handed p, by index
	giftIDs map[string]int // encoded Prepared → index
}

// gift returns the index of rd in s.gifts, adding it if new.
func (s *searcher) gift(rd Prepared) uint64 {
	var e encoder
	e.prepared(&rd)
	id, ok := s.giftIDs[string(e.b)]
	if !ok {
		id = len(s.gifts)
		s.gifts = append(s.gifts, rd)
		s.giftIDs[string(e.b)] = id
	}
	return uint64(id)
}

func newWorld(r searchRules) *world {
	w := &world{}
	for i, v := range searchVoters {
		a, err := NewAcceptor(AcceptorConfig{Name: v, Voters: searchVoters, Incarnation: uint64(i + 1)})
		if err != nil {
			panic(err)
		}
		a.weak = r.weak
		if err := a.Reinitialize(); err != nil {
			panic(err)
		}
		w.acc[i] = *a
	}
	for i, n := range []string{"p", "q"} {
		p, err := NewProposer(ProposerConfig{Node: n, Incarnation: 1, Voters: searchVoters})
		if err != nil {
			panic(err)
		}
		p.adoptAny = r.adoptAny
		w.slots[i].p = *p
	}
	return w
}

// clientChange is client i's change in its round-th round (from 0).
func clientChange(i, round int) Change {
	return appendChange(fmt.Sprintf("%s%d", []string{"x", "y"}[i], round))
}

// appendChange writes, on top of any value, its data followed by the token
// of that value and the letter (a client's letter and round).
func appendChange(letter string) Change {
	return func(cur Value) ([]byte, bool, error) {
		return []byte(string(cur.Data) + "<" + cur.Token().String() + ">" + letter), true, nil
	}
}

// descends reports whether v was written on top of lo, directly or
// through other writes.
func descends(v, lo Value) bool {
	return strings.HasPrefix(string(v.Data), string(lo.Data)+"<"+lo.Token().String()+">")
}

// search explores every state reachable within bounds and returns whether
// a violation was found.
func (s *searcher) search() bool {
	s.visited = map[uint64]int{}
	s.ids = map[string]int{}
	s.giftIDs = map[string]int{}
	return s.dfs(newWorld(s.rules), 0)
}

func (s *searcher) dfs(w *world, depth int) bool {
	s.prune(w)
	k := s.key(w)
	// Unbounded, a state is expanded once. Depth-bounded (iterative
	// deepening for short counterexamples), again when reached by a shorter
	// path, since the shorter path leaves more steps to the bound.
	if d, ok := s.visited[k]; ok && (s.bounds.maxDepth == 0 || d <= depth) {
		return false
	}
	if _, ok := s.visited[k]; !ok {
		s.states++
	}
	s.visited[k] = depth
	if s.bounds.maxDepth > 0 && depth >= s.bounds.maxDepth {
		return false
	}
	step := func(desc func() string, c *world) bool {
		if c == nil {
			return false
		}
		s.trace = append(s.trace, desc)
		if s.why != "" {
			for _, d := range s.trace {
				s.found = append(s.found, d())
			}
			return true
		}
		if s.dfs(c, depth+1) {
			return true
		}
		s.trace = s.trace[:len(s.trace)-1]
		return false
	}
	// Any message in flight is delivered (again).
	for id := range len(s.table) {
		if w.msgs[id/64]&(1<<(id%64)) == 0 {
			continue
		}
		m := s.table[id]
		var n *world
		switch m.Kind {
		case KindPrepare, KindAccept:
			n = s.toAcceptor(w, m)
		case kindGift:
			n = s.toHeir(w, m)
		default:
			n = s.toProposer(w, m)
		}
		if step(func() string { return describe(m) }, n) {
			return true
		}
		if m.Kind == KindAccept && !m.Next.IsZero() {
			m.Next = Ballot{}
			if step(func() string { return describe(m) + " (next ballot refused)" }, s.toAcceptor(w, m)) {
				return true
			}
		}
	}
	// Clients start rounds: any counter they may use, or, holding a
	// prepare phase done in advance, the round that spends it.
	for i := range 2 {
		sl := &w.slots[i]
		if sl.rounds >= s.bounds.clientRounds[i] {
			continue
		}
		first := sl.p.last.Counter + 1
		if sl.p.ready != nil {
			first = sl.p.last.Counter // one round: Start spends it
		}
		for c := first; c <= max(s.bounds.maxCounter, first); c++ {
			n := w.clone()
			ns := &n.slots[i]
			if i == 1 {
				ns.r = ns.p.StartFor(c, clientChange(i, ns.rounds), func(Value) (string, uint64) { return "p", 1 })
			} else {
				ns.r = ns.p.Start(c, clientChange(i, ns.rounds))
			}
			ns.rounds++
			for _, m := range ns.r.Prepares() {
				s.add(n, m)
			}
			if step(func() string {
				return fmt.Sprintf("%s starts round %s (skips prepare: %v)", ns.p.cfg.Node, ns.r.ballot, ns.r.prepared)
			}, n) {
				return true
			}
			if sl.p.ready != nil {
				break
			}
		}
	}
	// Voter a restarts without its record (its promise floor survives).
	if !w.restarted && !s.bounds.noRestart {
		if step(func() string { return "voter a restarts (amnesia; promise floor kept)" }, s.restart(w)) {
			return true
		}
	}
	// The restarted voter runs its recovery round.
	if w.restarted && !w.acc[0].Ready() && w.slots[2].rounds < s.bounds.recoveryRounds {
		floor, ok := w.acc[0].Floor()
		if ok {
			for c := max(w.slots[2].p.last.Counter, floor.Counter) + 1; c <= s.bounds.maxCounter; c++ {
				n := w.clone()
				ns := &n.slots[2]
				ns.r = ns.p.Recover(c, floor)
				ns.rounds++
				for _, m := range ns.r.Prepares() {
					s.add(n, m)
				}
				if step(func() string {
					return fmt.Sprintf("a (recovering) starts recovery round %s above floor %s", ns.r.ballot, floor)
				}, n) {
					return true
				}
			}
		}
	}
	return false
}

func (s *searcher) restart(w *world) *world {
	n := w.clone()
	n.restarted = true
	cfg := AcceptorConfig{Name: "a", Voters: searchVoters, Incarnation: 4, Storage: floorStore{promised: w.acc[0].promised}}
	if s.rules.weak.ignoreFloor {
		cfg.Storage = nil // nothing survives: the new process starts with no promise at all
	}
	a, err := NewAcceptor(cfg)
	if err != nil {
		panic(err)
	}
	a.weak = s.rules.weak
	n.acc[0] = *a
	p, err := NewProposer(ProposerConfig{Node: "a", Incarnation: 4, Voters: searchVoters})
	if err != nil {
		panic(err)
	}
	p.ownVote = s.rules.ownVote
	n.slots[2] = slot{p: *p}
	return n
}

func voterIndex(name string) int { return slices.Index(searchVoters, name) }

func (s *searcher) toAcceptor(w *world, m Message) *world {
	i := voterIndex(m.To)
	if m.Kind == KindAccept && w.acc[i].accepted == m.Ballot && w.acc[i].value.Equal(m.Value) {
		return nil // a duplicate: its reply is in flight already
	}
	a := w.acc[i]
	reply, err := a.Handle(0, m)
	if err != nil {
		panic(err)
	}
	if reply == nil || reply.Kind == KindNack {
		return nil // a nack changes nothing and is never delivered
	}
	n := w.clone()
	n.acc[i] = a
	if reply.Kind == KindAccepted {
		s.vote(n, m.Ballot, i, m.Value)
	}
	s.add(n, *reply)
	return n
}

func (s *searcher) toProposer(w *world, m Message) *world {
	i := slices.Index([]string{"p", "q", "a"}, m.To)
	if w.slots[i].r == nil || w.slots[i].r.ballot != m.Ballot {
		return nil // the round is gone; the glue drops its replies
	}
	r := w.slots[i].r
	j := slices.IndexFunc(r.peers, func(p peer) bool { return p.name == m.From })
	if r.out.Status != Pending || j < 0 {
		return nil
	}
	if p := r.peers[j]; m.Kind == KindPromise && (p.promised || r.sent) && !w.slots[i].p.last.Less(m.Accepted) {
		return nil // changes nothing
	} else if m.Kind == KindAccepted && p.accepted {
		return nil
	}
	n := w.clone()
	nr := n.round(i)
	out, err := nr.Handle(m)
	if err != nil {
		panic(err)
	}
	for _, o := range out {
		s.add(n, o)
	}
	if i == 2 {
		if o := nr.Outcome(); o.Status == Chosen {
			_ = n.acc[0].Recover(o) // a no-op error if the weakened voter already answers
		}
	}
	if o := nr.Outcome(); o.Prepared != nil {
		s.add(n, Message{Kind: kindGift, From: "q", To: "p", Ballot: o.Prepared.Ballot, Incarnation: s.gift(*o.Prepared)})
	}
	return n
}

// toHeir delivers a prepare phase q handed over to p.
func (s *searcher) toHeir(w *world, m Message) *world {
	n := w.clone()
	if !n.slots[0].p.Adopt(s.gifts[m.Incarnation]) {
		return nil
	}
	return n
}

// vote records that voter i accepted value v at ballot b and checks the
// invariant.
func (s *searcher) vote(w *world, b Ballot, i int, v Value) {
	w.votes = slices.Clone(w.votes)
	j, ok := slices.BinarySearchFunc(w.votes, b, func(x vote, b Ballot) int { return x.ballot.Compare(b) })
	if !ok {
		w.votes = slices.Insert(w.votes, j, vote{ballot: b, value: v})
	}
	x := &w.votes[j]
	if !x.value.Equal(v) {
		s.why = fmt.Sprintf("two values accepted at ballot %s: %s and %s", b, show(x.value), show(v))
		return
	}
	was := bits.OnesCount8(x.mask) >= 2
	x.mask |= 1 << i
	if was || bits.OnesCount8(x.mask) < 2 {
		return
	}
	for _, y := range w.votes {
		if bits.OnesCount8(y.mask) < 2 || y.ballot == b {
			continue
		}
		lo, hi := y, *x
		if b.Less(y.ballot) {
			lo, hi = *x, y
		}
		if !lo.value.IsEmpty() && !hi.value.Equal(lo.value) && !descends(hi.value, lo.value) {
			s.why = fmt.Sprintf("chosen %s at %s, then %s at %s", show(lo.value), lo.ballot, show(hi.value), hi.ballot)
			return
		}
	}
}

func show(v Value) string {
	if v.IsEmpty() {
		return "empty"
	}
	return fmt.Sprintf("%q(v%d by %s)", v.Data, v.Version, v.Written)
}

func describe(m Message) string {
	var b strings.Builder
	fmt.Fprintf(&b, "deliver %s %s→%s %s", m.Kind, m.From, m.To, m.Ballot)
	switch m.Kind {
	case KindPromise:
		fmt.Fprintf(&b, " (inc %d, accepted %s %s)", m.Incarnation, m.Accepted, show(m.Value))
	case KindAccept:
		fmt.Fprintf(&b, " (for inc %d, %s)", m.Incarnation, show(m.Value))
	case KindAccepted:
		fmt.Fprintf(&b, " (inc %d)", m.Incarnation)
	}
	return b.String()
}

// prune drops the messages whose delivery can no longer change anything,
// so that states differing only in such messages are one state. Every rule
// here holds for ever: promises only grow (a restarted voter reloads its
// promise from its floor), a proposer's ballots only grow, a round that
// ended ignores its replies.
func (s *searcher) prune(w *world) {
	for id := range len(s.table) {
		if w.msgs[id/64]&(1<<(id%64)) != 0 && s.dead(w, s.table[id]) {
			w.msgs[id/64] &^= 1 << (id % 64)
		}
	}
}

func (s *searcher) dead(w *world, m Message) bool {
	if m.To == "a" && !w.restarted && s.rules.weak.ignoreFloor && (m.Kind == KindPrepare || m.Kind == KindAccept) {
		return false // without a floor, the restart forgets the promise that refuses it
	}
	switch m.Kind {
	case KindPrepare:
		return !w.acc[voterIndex(m.To)].promised.Less(m.Ballot)
	case KindAccept:
		a := &w.acc[voterIndex(m.To)]
		if (a.accepted == m.Ballot && a.value.Equal(m.Value)) || m.Ballot.Less(a.promised) {
			return true
		}
		return !a.weak.acceptAnyIncarnation && m.Incarnation != a.cfg.Incarnation
	}
	if m.Kind == kindGift {
		// Kept: whether p refuses a hand-over it has adopted already,
		// or one below a ballot it used since, is Proposer.Adopt's rule,
		// which the search checks rather than assumes.
		return false
	}
	i := slices.Index([]string{"p", "q", "a"}, m.To)
	r := w.slots[i].r
	if r == nil || r.ballot != m.Ballot || r.out.Status != Pending {
		return true
	}
	j := slices.IndexFunc(r.peers, func(p peer) bool { return p.name == m.From })
	if j < 0 {
		return true
	}
	switch p := r.peers[j]; m.Kind {
	case KindPromise:
		return (p.promised || r.sent) && !w.slots[i].p.last.Less(m.Accepted)
	case KindAccepted:
		return p.accepted
	}
	return false
}

// add puts m in the set of messages in flight.
func (s *searcher) add(w *world, m Message) {
	var e encoder
	e.message(m)
	id, ok := s.ids[string(e.b)]
	if !ok {
		id = len(s.table)
		if id >= len(w.msgs)*64 {
			panic("search: more distinct messages than msgSet holds")
		}
		s.table = append(s.table, m)
		s.ids[string(e.b)] = id
	}
	w.msgs[id/64] |= 1 << (id % 64)
}

func (s *searcher) key(w *world) uint64 {
	e := encoder{b: s.buf[:0]}
	e.bool(w.restarted)
	for i := range w.acc {
		a := &w.acc[i]
		e.bool(a.ready)
		e.u64(a.cfg.Incarnation)
		e.ballot(a.promised)
		e.ballot(a.accepted)
		e.value(a.value)
		e.ballot(a.floor)
	}
	for i := range w.slots {
		sl := &w.slots[i]
		e.ballot(sl.p.last)
		e.prepared(sl.p.ready)
		e.u64(uint64(sl.rounds))
		e.round(sl.r)
	}
	for _, x := range w.msgs {
		e.u64(x)
	}
	for _, v := range w.votes {
		e.ballot(v.ballot)
		e.u64(uint64(v.mask))
	}
	s.buf = e.b
	return maphash.Bytes(searchSeed, e.b)
}

type encoder struct{ b []byte }

func (e *encoder) u64(x uint64) { e.b = binary.AppendUvarint(e.b, x) }
func (e *encoder) str(s string) { e.u64(uint64(len(s))); e.b = append(e.b, s...) }
func (e *encoder) bool(x bool) {
	if x {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}
func (e *encoder) ballot(b Ballot) { e.u64(b.Counter); e.str(b.Node); e.u64(b.Incarnation) }
func (e *encoder) value(v Value)   { e.u64(v.Version); e.ballot(v.Written); e.str(string(v.Data)) }
func (e *encoder) message(m Message) {
	e.u64(uint64(m.Kind))
	e.str(m.From)
	e.str(m.To)
	e.ballot(m.Ballot)
	e.u64(m.Incarnation)
	e.ballot(m.Accepted)
	e.value(m.Value)
	e.ballot(m.Next)
}
func (e *encoder) prepared(rd *Prepared) {
	if rd == nil {
		e.bool(false)
		return
	}
	e.bool(true)
	e.ballot(rd.Ballot)
	e.ballot(rd.At)
	e.value(rd.Value)
	for _, v := range rd.Voters {
		e.str(v.Name)
		e.u64(v.Incarnation)
	}
}
func (e *encoder) round(r *Round) {
	if r == nil {
		e.bool(false)
		return
	}
	e.bool(true)
	e.ballot(r.ballot)
	e.u64(uint64(r.out.Status))
	for _, j := range r.order {
		p := &r.peers[j]
		e.u64(uint64(j))
		e.u64(p.inc)
		e.ballot(p.at)
		e.value(p.value)
	}
	e.bool(r.sent)
	e.bool(r.prepared)
	e.ballot(r.next)
	for _, p := range r.peers {
		e.bool(p.accepted)
		e.bool(p.nextOK)
	}
	e.value(r.value)
}
