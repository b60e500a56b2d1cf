package casp

import (
	"errors"
	"testing"
)

// cluster delivers every message at once, in order: the happy path.
type cluster struct {
	t      *testing.T
	voters []string
	acc    map[string]*Acceptor
	now    uint64
}

func newCluster(t *testing.T, voters ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, voters: voters, acc: map[string]*Acceptor{}}
	for i, v := range voters {
		a, err := NewAcceptor(AcceptorConfig{Name: v, Voters: voters, Incarnation: uint64(i + 1)})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.Reinitialize(); err != nil {
			t.Fatal(err)
		}
		c.acc[v] = a
	}
	return c
}

// run drives r to completion, skipping voters in down.
func (c *cluster) run(r *Round, down ...string) Outcome {
	c.t.Helper()
	queue := r.Prepares()
	for len(queue) > 0 && r.Outcome().Status == Pending {
		m := queue[0]
		queue = queue[1:]
		a := c.acc[m.To]
		if a == nil || contains(down, m.To) {
			continue
		}
		reply, err := a.Handle(c.now, m)
		if err != nil {
			c.t.Fatal(err)
		}
		if reply == nil {
			continue
		}
		out, err := r.Handle(*reply)
		if err != nil {
			c.t.Fatal(err)
		}
		queue = append(queue, out...)
	}
	return r.Outcome()
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func newProposer(t *testing.T, node string, inc uint64, voters []string) *Proposer {
	t.Helper()
	p, err := NewProposer(ProposerConfig{Node: node, Incarnation: inc, Voters: voters})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestRoundCreateReadSwapConflict(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	p := newProposer(t, "p", 9, c.voters)

	o := c.run(p.Start(0, Read))
	if o.Status != Chosen || !o.Value.IsEmpty() || o.Err != nil {
		t.Fatalf("read of a fresh register: %+v", o)
	}
	o = c.run(p.Start(0, Create([]byte("x"))))
	if o.Status != Chosen || !o.Wrote || string(o.Value.Data) != "x" || o.Value.Version != 1 {
		t.Fatalf("create: %+v", o)
	}
	tok := o.Value.Token()
	o = c.run(p.Start(0, Create([]byte("y"))), "a")
	if o.Status != Chosen || !errors.Is(o.Err, ErrConflict) || string(o.Value.Data) != "x" {
		t.Fatalf("second create with one voter down: %+v", o)
	}
	// The round before re-accepted x through b and c, whose accepts also promised p's next ballot. This swap spends that
	// promise and sends its accepts to b and c only: with c down it stalls
	// until abandoned; the full round after it needs no c.
	r := p.Start(0, Swap(tok, []byte("z")))
	if !r.SkipsPrepare() || r.Prepares()[0].Kind != KindAccept {
		t.Fatalf("a write after a chosen round did not skip its prepare phase: %+v", r.Prepares())
	}
	if o = c.run(r, "c"); o.Status != Pending || !o.Wrote {
		t.Fatalf("prepared swap with a promiser down: %+v", o)
	}
	r.Abandon()
	if o = r.Outcome(); o.Status != Failed || !o.Wrote {
		t.Fatalf("abandoned: %+v", o)
	}
	o = c.run(p.Start(0, Swap(tok, []byte("z"))), "c")
	if o.Status != Chosen || string(o.Value.Data) != "z" || o.Value.Version != 2 {
		t.Fatalf("swap: %+v", o)
	}
	// Chosen through a and b, who promised the next ballot: the next write
	// skips its prepare phase and is chosen in one round trip.
	tok2 := o.Value.Token()
	r = p.Start(0, Swap(tok2, []byte("z2")))
	if !r.SkipsPrepare() {
		t.Fatal("second write did not skip its prepare phase")
	}
	if o = c.run(r); o.Status != Chosen || string(o.Value.Data) != "z2" || o.Value.Version != 3 || o.Value.Written != r.Ballot() {
		t.Fatalf("prepared swap: %+v", o)
	}
	o = c.run(p.Start(0, Swap(tok2, []byte("z3"))))
	if !errors.Is(o.Err, ErrConflict) || string(o.Value.Data) != "z2" {
		t.Fatalf("stale swap after a prepared one: %+v", o)
	}
	tok = tok2
	o = c.run(p.Start(0, Swap(tok, []byte("w"))))
	if !errors.Is(o.Err, ErrConflict) || string(o.Value.Data) != "z2" {
		t.Fatalf("stale swap: %+v", o)
	}
	o = c.run(p.Start(0, Read), "a", "b")
	if o.Status != Pending {
		t.Fatalf("read without a quorum must not finish: %+v", o)
	}
}

func TestRestartedVoterRecoversThroughOthers(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	p := newProposer(t, "p", 9, c.voters)
	if o := c.run(p.Start(0, Create([]byte("x")))); o.Status != Chosen {
		t.Fatalf("create: %+v", o)
	}
	// "a" restarts without disk but with clock-bounded floors.
	a, err := NewAcceptor(AcceptorConfig{Name: "a", Voters: c.voters, Incarnation: 77, MaxAhead: 5, Now: 10})
	if err != nil {
		t.Fatal(err)
	}
	c.acc["a"] = a
	c.now = 10
	if a.Ready() {
		t.Fatal("a restarted voter without state must not answer")
	}
	if o := c.run(p.Start(0, Read), "b"); o.Status == Chosen {
		t.Fatalf("a recovering voter must not count toward a quorum: %+v", o)
	}
	floor, ok := a.Floor()
	if !ok || floor.Counter != 15 {
		t.Fatalf("floor = %v, %v; want counter 15", floor, ok)
	}
	rp := newProposer(t, "a", 77, c.voters)
	o := c.run(rp.Recover(c.now, floor))
	if o.Status != Chosen || string(o.Value.Data) != "x" {
		t.Fatalf("recovery round: %+v", o)
	}
	if err := a.Recover(o); err != nil {
		t.Fatal(err)
	}
	c.now = 20 // the clock moves on: ballots above the recovery's are in range
	if o := c.run(p.Start(c.now, Read), "b"); o.Status != Chosen || string(o.Value.Data) != "x" {
		t.Fatalf("read through the recovered voter: %+v", o)
	}
}

func TestVoterHashMismatchRefused(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	p := newProposer(t, "p", 1, []string{"a", "b", "x"})
	for _, m := range p.Start(0, Read).Prepares() {
		if a := c.acc[m.To]; a != nil {
			if _, err := a.Handle(0, m); !errors.Is(err, ErrVoterHash) {
				t.Fatalf("prepare from another voter list: err = %v", err)
			}
		}
	}
	if VoterHash([]string{"c", "a", "b"}) != VoterHash([]string{"a", "b", "c"}) {
		t.Fatal("voter hash depends on order")
	}
}

func TestValidateVoters(t *testing.T) {
	for _, bad := range [][]string{nil, {"a", "b"}, {"a", "", "c"}, {"a", "b", "a"}} {
		if err := ValidateVoters(bad); err == nil {
			t.Errorf("ValidateVoters(%q) accepted", bad)
		}
	}
}

type failingDisk struct{ err error }

func (failingDisk) Load() (State, bool, error) { return State{}, false, nil }
func (d failingDisk) Save(State) error         { return d.err }

func TestAcceptorSaveFailureSendsNothingAndKeepsState(t *testing.T) {
	voters := []string{"a", "b", "c"}
	errDisk := errors.New("disk full")
	a, err := NewAcceptor(AcceptorConfig{Name: "a", Voters: voters, Incarnation: 1, Storage: failingDisk{err: errDisk}, MaxAhead: 100})
	if err != nil {
		t.Fatal(err)
	}
	a.ready = true // as if recovered; Recover would need the disk too
	p := newProposer(t, "p", 1, voters)
	m := p.Start(0, Read).Prepares()[0]
	reply, err := a.Handle(0, m)
	if !errors.Is(err, errDisk) || reply != nil {
		t.Fatalf("Handle with a failing disk = %v, %v; want no reply and the disk's error", reply, err)
	}
	if !a.State().Promised.IsZero() {
		t.Fatalf("promise moved although it was not saved: %v", a.State().Promised)
	}
}

func TestPrepareFarAheadOfClockRefused(t *testing.T) {
	voters := []string{"a", "b", "c"}
	a, err := NewAcceptor(AcceptorConfig{Name: "a", Voters: voters, Incarnation: 1, MaxAhead: 100, Now: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reinitialize(); err != nil {
		t.Fatal(err)
	}
	p := newProposer(t, "p", 1, voters)
	m := p.Start(1201, Read).Prepares()[0]
	reply, err := a.Handle(1100, m)
	if err != nil || reply.Kind != KindNack || reply.Reason != NackAhead || reply.Seen.Counter != 1200 {
		t.Fatalf("prepare at counter 1201 with clock 1100 and MaxAhead 100: %+v, %v; want a nack naming 1200", reply, err)
	}
	if reply, _ := a.Handle(1101, m); reply.Kind != KindPromise {
		t.Fatalf("once the clock caught up: %+v; want a promise", reply)
	}
}

// One ballot carries one value: a second accept at the ballot a voter
// accepted, with another value, is refused, and the voter keeps the first
// value (before, the acceptor answered Accepted without storing it: a
// vote never cast, were a ballot ever reused). Reachable with the shipped
// rules whenever the promise still equals the accepted ballot (an accept
// that asked for no next ballot).
func TestSecondAcceptAtOneBallotWithAnotherValueIsRefused(t *testing.T) {
	voters := []string{"a", "b", "c"}
	a, err := NewAcceptor(AcceptorConfig{Name: "a", Voters: voters, Incarnation: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reinitialize(); err != nil {
		t.Fatal(err)
	}
	p := newProposer(t, "p", 1, voters)
	prep := p.Start(0, Read).Prepares()[0]
	if r, err := a.Handle(0, prep); err != nil || r.Kind != KindPromise {
		t.Fatalf("prepare: %+v, %v", r, err)
	}
	accept := func(data string) *Message {
		t.Helper()
		r, err := a.Handle(0, Message{Kind: KindAccept, From: "p", To: "a", VoterHash: VoterHash(voters), Ballot: prep.Ballot, Incarnation: 1,
			Value: Value{Version: 1, Written: prep.Ballot, Data: []byte(data)}})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := accept("x"); r.Kind != KindAccepted {
		t.Fatalf("first accept: %+v", r)
	}
	if r := accept("x"); r.Kind != KindAccepted {
		t.Fatalf("a duplicate of the first accept: %+v; want Accepted again", r)
	}
	if r := accept("y"); r.Kind == KindAccepted {
		t.Fatalf("a second value at ballot %s was answered Accepted while the voter keeps %q", prep.Ballot, a.State().Value.Data)
	}
	if got := string(a.State().Value.Data); got != "x" {
		t.Fatalf("the voter holds %q, want the first value x", got)
	}
}

func TestReinitializeNeverRevivesAnOldToken(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	p := newProposer(t, "p", 1, c.voters)
	o := c.run(p.Start(0, Create([]byte("x"))))
	old := o.Value.Token()
	// A full restart: every voter forgets, the register is re-initialised.
	for i, v := range c.voters {
		a, err := NewAcceptor(AcceptorConfig{Name: v, Voters: c.voters, Incarnation: uint64(10 + i)})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := a.Floor(); ok {
			t.Fatal("a voter without disk or clock bound claims a floor")
		}
		if err := a.Reinitialize(); err != nil {
			t.Fatal(err)
		}
		c.acc[v] = a
	}
	q := newProposer(t, "q", 2, c.voters)
	if o := c.run(q.Start(0, Read)); o.Status != Chosen || !o.Value.IsEmpty() {
		t.Fatalf("read after re-initialisation: %+v; want the empty register", o)
	}
	if o := c.run(q.Start(0, Create([]byte("y")))); o.Status != Chosen || o.Value.Token() == old {
		t.Fatalf("create after re-initialisation: %+v", o)
	}
	o = c.run(p.Start(0, Swap(old, []byte("stale"))))
	if o.Status == Failed { // p's counter was behind q's: retry above what it saw
		o = c.run(p.Start(0, Swap(old, []byte("stale"))))
	}
	if !errors.Is(o.Err, ErrConflict) {
		t.Fatalf("swap against a token from before the re-initialisation: %+v; want a conflict", o)
	}
}

func TestMajorityAmnesiaIsUnavailableNotUnsafe(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	p := newProposer(t, "p", 1, c.voters)
	if o := c.run(p.Start(0, Create([]byte("x")))); o.Status != Chosen {
		t.Fatalf("create: %+v", o)
	}
	// a and b restart without disk (clock-bounded floors): a majority forgot.
	for i, v := range []string{"a", "b"} {
		a, err := NewAcceptor(AcceptorConfig{Name: v, Voters: c.voters, Incarnation: uint64(20 + i), MaxAhead: 5, Now: 10})
		if err != nil {
			t.Fatal(err)
		}
		c.acc[v] = a
	}
	c.now = 100
	for _, v := range []string{"a", "b"} {
		floor, _ := c.acc[v].Floor()
		rp := newProposer(t, v, 99, c.voters)
		if o := c.run(rp.Recover(c.now, floor)); o.Status == Chosen {
			t.Fatalf("%s recovered with only one other voter answering: %+v", v, o)
		}
	}
	for range 3 {
		if o := c.run(p.Start(c.now, Read)); o.Status == Chosen {
			t.Fatalf("a read completed with a majority of voters recovering: %+v", o)
		}
	}
}

// deliver hands every message to its acceptor (skipping voters in down)
// and returns the replies.
func (c *cluster) deliver(ms []Message, down ...string) []Message {
	c.t.Helper()
	var out []Message
	for _, m := range ms {
		if contains(down, m.To) {
			continue
		}
		reply, err := c.acc[m.To].Handle(c.now, m)
		if err != nil {
			c.t.Fatal(err)
		}
		if reply != nil {
			out = append(out, *reply)
		}
	}
	return out
}

// promiseOnly feeds r the promises of the voters not in down and returns the
// accepts it sends (none when it finished on its promises).
func (c *cluster) promiseOnly(r *Round, down ...string) []Message {
	c.t.Helper()
	var accepts []Message
	for _, m := range c.deliver(r.Prepares(), down...) {
		out, err := r.Handle(m)
		if err != nil {
			c.t.Fatal(err)
		}
		accepts = append(accepts, out...)
	}
	return accepts
}

func TestReadFinishesOnAgreeingPromises(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	p := newProposer(t, "p", 9, c.voters)
	if o := c.run(p.Start(0, Create([]byte("x")))); o.Status != Chosen {
		t.Fatalf("create: %+v", o)
	}
	// a and b (the first quorum to promise below) accepted x at one ballot
	// (run stops once x is chosen: c missed the accept). A read needs no
	// accept phase, nor does a compare-and-swap that the value refuses.
	for name, ch := range map[string]Change{"read": Read, "refused create": Create([]byte("y"))} {
		r := p.Start(0, ch)
		if accepts := c.promiseOnly(r); len(accepts) != 0 {
			t.Fatalf("%s with agreeing promises sent %d accepts", name, len(accepts))
		}
		if o := r.Outcome(); o.Status != Chosen || string(o.Value.Data) != "x" || o.Wrote {
			t.Fatalf("%s with agreeing promises: %+v; want x chosen", name, o)
		}
	}
	// y is accepted by a and b only; c holds nothing yet. A read through a
	// and c sees two ballots: it must run the accept phase (making y chosen
	// at its own ballot on a and c) before reporting y.
	tok := p.Start(0, Read)
	c.run(tok)
	if o := c.run(p.Start(0, Swap(tok.Outcome().Value.Token(), []byte("y"))), "c"); o.Status != Chosen {
		t.Fatalf("swap to y without c: %+v", o)
	}
	r := p.Start(0, Read)
	accepts := c.promiseOnly(r, "b")
	if len(accepts) != 2 || r.Outcome().Status != Pending {
		t.Fatalf("read through a and c that disagree: %d accepts, %+v; want the accept phase", len(accepts), r.Outcome())
	}
	for _, m := range c.deliver(accepts) {
		if _, err := r.Handle(m); err != nil {
			t.Fatal(err)
		}
	}
	if o := r.Outcome(); o.Status != Chosen || string(o.Value.Data) != "y" {
		t.Fatalf("read through a and c: %+v; want y", o)
	}
}

// TestReadAfterReinitializeNeverFlipsBack: a and b are re-initialised (a
// full restart without disk) while c kept x. A read through a and b finds
// them agreeing on the zero ballot; if it finished on those promises, a
// later read through b and c would find x again. The read rule excludes the
// zero ballot; the weakened rule shows the flip.
func TestReadAfterReinitializeNeverFlipsBack(t *testing.T) {
	for _, weak := range []bool{false, true} {
		c := newCluster(t, "a", "b", "c")
		p := newProposer(t, "p", 9, c.voters)
		if weak {
			p.weakRead = readZero
		}
		if o := c.run(p.Start(0, Create([]byte("x")))); o.Status != Chosen {
			t.Fatalf("create: %+v", o)
		}
		if o := c.run(p.Start(0, Read), "b"); o.Status != Chosen || c.acc["c"].State().Value.IsEmpty() {
			t.Fatalf("read through a and c (c accepts x): %+v, c %+v", o, c.acc["c"].State())
		}
		c.reinitialize(30, "a", "b")
		if !weak {
			if o := c.query(p, "c").Outcome(); o.Status == Chosen {
				t.Fatalf("query through the re-initialised a and b: %+v; want no answer", o)
			}
			if o := c.query(p).Outcome(); o.Status == Chosen {
				t.Fatalf("query through a, b (re-initialised) and c (x): %+v; want no answer", o)
			}
		}
		if o := c.run(p.Start(0, Read), "c"); o.Status != Chosen || !o.Value.IsEmpty() {
			t.Fatalf("read through the re-initialised a and b: %+v; want the empty register", o)
		}
		o := c.run(p.Start(0, Read), "a")
		switch {
		case !weak && (o.Status != Chosen || !o.Value.IsEmpty()):
			t.Fatalf("read through b and c after an empty read: %+v; want the empty register again", o)
		case weak && string(o.Value.Data) != "x":
			t.Fatalf("weakened rule (zero ballot counts as agreement): %+v; the test expects the flip back to x it exists to catch", o)
		}
	}
}

// reinitialize restarts voters without Storage (incarnations from inc
// on) and re-initialises them, as after a full restart without disk.
func (c *cluster) reinitialize(inc uint64, voters ...string) {
	c.t.Helper()
	for i, v := range voters {
		a, err := NewAcceptor(AcceptorConfig{Name: v, Voters: c.voters, Incarnation: inc + uint64(i)})
		if err != nil {
			c.t.Fatal(err)
		}
		if err := a.Reinitialize(); err != nil {
			c.t.Fatal(err)
		}
		c.acc[v] = a
	}
}

// query runs a Query through the voters not in down and returns it.
func (c *cluster) query(p *Proposer, down ...string) *Round {
	c.t.Helper()
	q := p.Query(c.now)
	for _, m := range c.deliver(q.Prepares(), down...) {
		if _, err := q.Handle(m); err != nil {
			c.t.Fatal(err)
		}
	}
	return q
}

func TestQueryReadsWithoutPromising(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	p := newProposer(t, "p", 9, c.voters)
	if q := c.query(p, "c"); q.Outcome().Status != Pending {
		t.Fatalf("query of a fresh register, two voters at the zero ballot: %+v; want no answer yet", q.Outcome())
	}
	if o := c.query(p).Outcome(); o.Status != Chosen || !o.Value.IsEmpty() {
		t.Fatalf("query of a fresh register, every voter at the zero ballot: %+v; want the empty register", o)
	}
	if o := c.run(p.Start(0, Create([]byte("x")))); o.Status != Chosen {
		t.Fatalf("create: %+v", o)
	}
	before := map[string]Ballot{}
	for v, a := range c.acc {
		before[v] = a.State().Promised
	}
	// a and b accepted x (c missed the accept): two reports agree.
	q := c.query(p)
	if o := q.Outcome(); o.Status != Chosen || string(o.Value.Data) != "x" {
		t.Fatalf("query after x was chosen: %+v; want x", o)
	}
	for v, a := range c.acc {
		if a.State().Promised != before[v] {
			t.Fatalf("query changed %s's promise from %s to %s", v, before[v], a.State().Promised)
		}
	}
	// Without b, the reports of a (x) and c (nothing) disagree: the query
	// must not answer (it waits for b; the glue reads by a round instead).
	if o := c.query(p, "b").Outcome(); o.Status == Chosen {
		t.Fatalf("query through a and c that disagree: %+v; want no answer", o)
	}
	// One report is no quorum.
	if o := c.query(p, "b", "c").Outcome(); o.Status != Pending {
		t.Fatalf("query with one report: %+v; want pending", o)
	}
}

// A release hands its next prepare phase to the heir: the heir's write is
// one round trip, the hand-over is spent once, and nobody else can use it.
func TestPrepareHandedOverIsSpentOnceByItsHeirOnly(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	p := newProposer(t, "p", 9, c.voters)
	q := newProposer(t, "q", 7, c.voters)
	o := c.run(p.StartFor(0, Create([]byte("x")), func(Value) (string, uint64) { return "q", 7 }))
	if o.Status != Chosen || o.Prepared == nil {
		t.Fatalf("release: %+v", o)
	}
	rd := *o.Prepared
	if rd.Ballot.Node != "q" || rd.Ballot.Incarnation != 7 || !o.Value.Written.Less(rd.Ballot) || !rd.Value.Equal(o.Value) {
		t.Fatalf("prepared: %+v for %+v", rd, o.Value)
	}
	other := newProposer(t, "q", 8, c.voters) // q restarted
	if other.Adopt(rd) || p.Adopt(rd) {
		t.Fatal("a prepare phase adopted by a process it was not handed to")
	}
	if !q.Adopt(rd) || q.Adopt(rd) {
		t.Fatal("the heir must adopt the hand-over once, and only once")
	}
	r := q.Start(0, Swap(o.Value.Token(), []byte("y")))
	if !r.SkipsPrepare() || r.Ballot() != rd.Ballot {
		t.Fatalf("the heir's write did not spend the hand-over: %s", r.Ballot())
	}
	if o = c.run(r); o.Status != Chosen || string(o.Value.Data) != "y" {
		t.Fatalf("heir's write: %+v", o)
	}
	heirs := o.Value.Token()
	// The releaser's own next round is a full one, above.
	r = p.Start(0, Swap(o.Value.Token(), []byte("z")))
	if r.SkipsPrepare() || !rd.Ballot.Less(r.Ballot()) {
		t.Fatalf("releaser's round after its hand-over: %s skips prepare %v", r.Ballot(), r.SkipsPrepare())
	}
	// The heir's accepts promised its own next ballot: the releaser's first
	// round is refused, the one above what the refusal named is chosen.
	if o = c.run(r); o.Status != Failed {
		t.Fatalf("releaser's write below the heir's promise: %+v", o)
	}
	if o = c.run(p.Start(0, Swap(heirs, []byte("z")))); o.Status != Chosen || string(o.Value.Data) != "z" {
		t.Fatalf("releaser's write after the heir's: %+v", o)
	}
}

// A heir that read the register (a query: every follower's Get that is
// not served from its cache) just before the release still adopts the
// hand-over. The query's counter is one above the leader's ballot it
// learned from a push, which is the release's own prepared ballot; the
// hand-over is one above that, and a query, which sends no accepts, must
// keep nothing above its own ballot.
func TestHeirThatQueriedJustBeforeTheReleaseAdoptsIt(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	p := newProposer(t, "p", 9, c.voters)
	q := newProposer(t, "q", 7, c.voters)
	o := c.run(p.Start(0, Create([]byte("x"))))
	if o.Status != Chosen {
		t.Fatalf("create: %+v", o)
	}
	q.Observe(o.Value.Written) // the push
	if qo := c.query(q).Outcome(); qo.Status != Chosen || string(qo.Value.Data) != "x" {
		t.Fatalf("heir's query: %+v", qo)
	}
	r := p.StartFor(0, Swap(o.Value.Token(), []byte("released")), func(Value) (string, uint64) { return "q", 7 })
	if !r.SkipsPrepare() {
		t.Fatal("the release did not spend the leader's own prepared ballot")
	}
	o = c.run(r)
	if o.Status != Chosen || o.Prepared == nil {
		t.Fatalf("release: %+v", o)
	}
	if !q.Adopt(*o.Prepared) {
		t.Fatalf("the heir refused the hand-over at %s after its query", o.Prepared.Ballot)
	}
	if r := q.Start(0, Swap(o.Value.Token(), []byte("y"))); !r.SkipsPrepare() {
		t.Fatal("the heir's write did not spend the hand-over")
	} else if o := c.run(r); o.Status != Chosen || string(o.Value.Data) != "y" {
		t.Fatalf("heir's write: %+v", o)
	}
}

// A round's accepts ask the voters to promise the proposer's next ballot:
// a round started while it runs (a read beside a write, a recovery beside
// a client's round) must not take that ballot, or one ballot could carry
// two values (found by review: chosen "x" and "z" both at one ballot).
func TestOverlappingRoundsNeverShareTheNextBallot(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	p := newProposer(t, "p", 9, c.voters)
	x := p.Start(0, Create([]byte("x")))
	y := p.Start(0, Read)
	var next Ballot
	for _, m := range x.Prepares() {
		a := c.acc[m.To]
		reply, err := a.Handle(0, m)
		if err != nil {
			t.Fatal(err)
		}
		out, err := x.Handle(*reply)
		if err != nil {
			t.Fatal(err)
		}
		for _, acc := range out {
			next = acc.Next
		}
	}
	if next.IsZero() || !next.Less(y.Ballot()) {
		t.Fatalf("a round started during another (%s) is not above that round's next ballot %s", y.Ballot(), next)
	}
}

// A voter started with empty Storage is blank; it starts a new election
// only while blank; for the quiet time it refuses other rounds as
// recovering and stays blank, answers recovery rounds and stays blank,
// and the first writer's prepare it answers after that ends it.
func TestBlankUntilAnsweringARoundThatMayWrite(t *testing.T) {
	voters := []string{"a", "b", "c"}
	a, err := NewAcceptor(AcceptorConfig{Name: "a", Voters: voters, Incarnation: 1, Storage: &memDisk{}, MaxAhead: 100, Now: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if !a.Blank() {
		t.Fatal("a voter started with empty Storage is not blank")
	}
	if err := a.NewElection(1000, 50); err != nil {
		t.Fatal(err)
	}
	w := newProposer(t, "w", 7, voters)
	handle := func(now uint64, m Message) *Message {
		t.Helper()
		m.To = "a"
		r, err := a.Handle(now, m)
		if err != nil || r == nil {
			t.Fatalf("Handle(%v) = %v, %v", m.Kind, r, err)
		}
		return r
	}
	if r := handle(1010, w.Start(1010, Read).Prepares()[0]); r.Kind != KindNack || r.Reason != NackRecovering || !a.Blank() {
		t.Fatalf("a writer's prepare while quiet: %v/%v, blank %v; want refused as recovering, still blank", r.Kind, r.Reason, a.Blank())
	}
	b := newProposer(t, "b", 2, voters)
	if r := handle(1020, b.Recover(1020, Ballot{Counter: 1100}).Prepares()[0]); r.Kind != KindPromise || !a.Blank() {
		t.Fatalf("a recovery prepare: %v, blank %v; want a promise, still blank", r.Kind, a.Blank())
	}
	if r := handle(1060, w.Start(1110, Read).Prepares()[0]); r.Kind != KindPromise || a.Blank() {
		t.Fatalf("a writer's prepare after the quiet time: %v, blank %v; want a promise, no longer blank", r.Kind, a.Blank())
	}
	if err := (&Acceptor{}).NewElection(0, 0); !errors.Is(err, ErrNotBlank) {
		t.Fatalf("NewElection on an acceptor that is not blank: %v, want ErrNotBlank", err)
	}
	persisted, err := NewAcceptor(AcceptorConfig{Name: "a", Voters: voters, Incarnation: 2, Storage: &memDisk{ok: true}})
	if err != nil {
		t.Fatal(err)
	}
	if persisted.Blank() {
		t.Fatal("a voter whose Storage holds a state is blank")
	}
}

// blankCluster is a cluster whose voters start with empty Storage (blank,
// as with empty StateDirs) and hold the empty register at once, as a new
// election leaves them.
func blankCluster(t *testing.T, voters ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, voters: voters, acc: map[string]*Acceptor{}}
	for i, v := range voters {
		a, err := NewAcceptor(AcceptorConfig{Name: v, Voters: voters, Incarnation: uint64(i + 1), Storage: &memDisk{}, PersistRecord: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := a.NewElection(0, 0); err != nil {
			t.Fatal(err)
		}
		c.acc[v] = a
	}
	return c
}

// A query proves the register new (Outcome.New) when every voter reports
// the empty register and says it is blank, whatever the ballots (the
// recovery rounds of a new election leave voters at theirs); it waits for
// every voter while that is possible, even once a quorum agrees; the
// first write, or a read by a round, ends it for good.
func TestQueryProvesANewRegisterOnlyFromEveryVoter(t *testing.T) {
	c := blankCluster(t, "a", "b", "c")
	p := newProposer(t, "p", 9, c.voters)
	if q := c.query(p, "c"); q.Outcome().Status != Pending || !q.MayBeNew() {
		t.Fatalf("query of a new register without c: %+v, may be new %v; want no answer yet, still possibly new", q.Outcome(), q.MayBeNew())
	}
	if o := c.query(p).Outcome(); o.Status != Chosen || !o.Value.IsEmpty() || !o.New {
		t.Fatalf("query of a new register: %+v; want the empty register, new", o)
	}
	// c restarts blank and recovers through a and b: all three then hold
	// the empty register at c's recovery ballot, and are still blank.
	fresh, err := NewAcceptor(AcceptorConfig{Name: "c", Voters: c.voters, Incarnation: 33, Storage: &memDisk{}, PersistRecord: true, MaxAhead: 100})
	if err != nil {
		t.Fatal(err)
	}
	c.acc["c"] = fresh
	floor, _ := fresh.Floor()
	if o := c.run(newProposer(t, "c", 33, c.voters).Recover(0, floor)); o.Status != Chosen || fresh.Recover(o) != nil {
		t.Fatalf("c's recovery: %+v", o)
	}
	q := c.query(p, "c")
	if o := q.Outcome(); o.Status != Pending || !q.MayBeNew() {
		t.Fatalf("a and b agree on the empty register at c's recovery ballot: %+v; want the query to wait for c", o)
	}
	if o := c.query(p).Outcome(); o.Status != Chosen || !o.New {
		t.Fatalf("query after a blank voter's recovery: %+v; want new", o)
	}
	// A read by a round makes its promisers ordinary voters: the register
	// is empty, and not provably new.
	if o := c.run(p.Start(0, Read)); o.Status != Chosen || !o.Value.IsEmpty() {
		t.Fatalf("read by a round: %+v", o)
	}
	if q := c.query(p); q.Outcome().New || q.MayBeNew() {
		t.Fatalf("query after a read round: %+v; want the register not provably new", q.Outcome())
	}

	c = blankCluster(t, "a", "b", "c")
	if o := c.run(p.Start(0, Create([]byte("x")))); o.Status != Chosen {
		t.Fatalf("create: %+v", o)
	}
	if q := c.query(p); q.Outcome().New || q.MayBeNew() || string(q.Outcome().Value.Data) != "x" {
		t.Fatalf("query after a write: %+v; want x, not new", q.Outcome())
	}
}

// Every reply says whether its voter is blank.
func TestRepliesSayWhetherTheVoterIsBlank(t *testing.T) {
	c := blankCluster(t, "a", "b", "c")
	p := newProposer(t, "p", 9, c.voters)
	for _, m := range c.deliver(p.Query(0).Prepares()) {
		if !m.Blank {
			t.Fatalf("%s's report of a new register: not blank", m.From)
		}
	}
	r := p.Start(0, Read)
	for _, m := range c.deliver(r.Prepares()) {
		if m.Kind != KindPromise || m.Blank {
			t.Fatalf("%s's answer to a reader's prepare: %v, blank %v; want a promise, no longer blank", m.From, m.Kind, m.Blank)
		}
	}
}

// The proof needs every voter, and every voter blank. The weakened rules
// prove new a register that holds a write:
//   - a quorum of blank voters, the third unheard: b restarted with an
//     empty Storage and was re-initialised (a majority recovering for
//     ReinitializeAfter, as the glue would have it: a and b were
//     recovering while c was cut off), c never took part, and a, which
//     holds x, is slow to answer;
//   - every voter reporting the empty register, blank or not: voters
//     without Storage re-initialised after a full restart, which forgot x.
func TestProofOfANewRegisterNeedsEveryVoterBlank(t *testing.T) {
	for _, weak := range []weakNewRule{newRuleShipped, newFromQuorum} {
		c := blankCluster(t, "a", "b", "c")
		p := newProposer(t, "p", 9, c.voters)
		p.weakNew = weak
		if o := c.run(p.Start(0, Create([]byte("x"))), "c"); o.Status != Chosen {
			t.Fatalf("create through a and b: %+v", o)
		}
		b, err := NewAcceptor(AcceptorConfig{Name: "b", Voters: c.voters, Incarnation: 22, Storage: &memDisk{}, PersistRecord: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Reinitialize(); err != nil {
			t.Fatal(err)
		}
		c.acc["b"] = b
		q := c.query(p, "a")
		switch o := q.Outcome(); {
		case weak == newRuleShipped && (o.Status != Pending || o.New):
			t.Fatalf("query through b and c, blank, while a holds x: %+v; want it to wait for a", o)
		case weak == newFromQuorum && !o.New:
			t.Fatalf("weakened rule (a quorum suffices): %+v; the test expects the false proof it exists to catch", o)
		}
		if weak == newRuleShipped {
			if o := c.query(p).Outcome(); o.New {
				t.Fatalf("query through a (x), b and c: %+v; want not new", o)
			}
		}
	}
	for _, weak := range []weakNewRule{newRuleShipped, newWithoutBlank} {
		c := newCluster(t, "a", "b", "c")
		p := newProposer(t, "p", 9, c.voters)
		p.weakNew = weak
		if o := c.run(p.Start(0, Create([]byte("x")))); o.Status != Chosen {
			t.Fatalf("create: %+v", o)
		}
		c.reinitialize(40, c.voters...)
		o := c.query(p).Outcome()
		switch {
		case o.Status != Chosen || !o.Value.IsEmpty():
			t.Fatalf("query after a full restart without Storage: %+v; want the empty register", o)
		case weak == newRuleShipped && o.New:
			t.Fatalf("query of voters re-initialised without Storage: %+v; want not new (x was written)", o)
		case weak == newWithoutBlank && !o.New:
			t.Fatalf("weakened rule (blankness ignored): %+v; the test expects the false proof it exists to catch", o)
		}
	}
}

// A write made on a proof (StartNew) is marked on its prepares and
// accepts, ends the quiet time of a voter that started a new election,
// and is refused by a voter still recovering.
func TestWriteOnAProofOfANewRegisterEndsTheQuietTime(t *testing.T) {
	voters := []string{"a", "b", "c"}
	a, err := NewAcceptor(AcceptorConfig{Name: "a", Voters: voters, Incarnation: 1, Storage: &memDisk{}, PersistRecord: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.NewElection(1000, 50); err != nil {
		t.Fatal(err)
	}
	recovering, err := NewAcceptor(AcceptorConfig{Name: "b", Voters: voters, Incarnation: 2, Storage: &memDisk{}, PersistRecord: true})
	if err != nil {
		t.Fatal(err)
	}
	w := newProposer(t, "w", 7, voters)
	prepare := w.StartNew(1010, Create([]byte("x"))).Prepares()[0]
	if !prepare.New {
		t.Fatal("prepare of a write on a proof: not marked New")
	}
	prepare.To = "b"
	if reply, err := recovering.Handle(1010, prepare); err != nil || reply.Kind != KindNack || reply.Reason != NackRecovering {
		t.Fatalf("a recovering voter's answer to a write on a proof: %+v, %v; want refused as recovering", reply, err)
	}
	prepare.To = "a"
	if reply, err := a.Handle(1010, prepare); err != nil || reply.Kind != KindPromise || a.Blank() {
		t.Fatalf("a quiet voter's answer to a write on a proof: %+v, %v, blank %v; want a promise, no longer blank", reply, err, a.Blank())
	}
	c := blankCluster(t, voters...)
	for _, m := range c.promiseOnly(w.StartNew(0, Create([]byte("x")))) {
		if !m.New {
			t.Fatalf("accept of a write on a proof to %s: not marked New", m.To)
		}
	}
	if reply, err := a.Handle(1011, w.Start(1011, Read).Prepares()[0]); err != nil || reply.Kind != KindPromise {
		t.Fatalf("an ordinary prepare after the quiet time ended: %+v, %v; want a promise", reply, err)
	}
}

// A held acceptor answers nothing and cannot recover; released, it
// forgets its record and recovers above every ballot its proposer used
// before, so a recovery round from before the release cannot end it.
func TestHeldAcceptorIsSilentAndStartsOverOnRelease(t *testing.T) {
	c := newCluster(t, "a", "b", "c")
	a, err := NewAcceptor(AcceptorConfig{Name: "a", Voters: c.voters, Incarnation: 1, MaxAhead: 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reinitialize(); err != nil {
		t.Fatal(err)
	}
	c.acc["a"] = a
	p := newProposer(t, "p", 1, c.voters)
	if o := c.run(p.Start(0, func(Value) ([]byte, bool, error) { return []byte("x"), true, nil })); o.Status != Chosen {
		t.Fatalf("write: %+v", o)
	}
	a.Hold()
	if a.Ready() {
		t.Fatal("a held acceptor reports ready")
	}
	if r, err := a.Handle(0, Message{Kind: KindQuery, From: "p", To: "a", VoterHash: VoterHash(c.voters)}); r != nil || err != nil {
		t.Fatalf("a held acceptor answered: %+v, %v", r, err)
	}
	if _, ok := a.Floor(); ok {
		t.Fatal("a held acceptor offers a floor to recover above")
	}
	ap := newProposer(t, "a", 1, c.voters)
	early := c.run(ap.Recover(0, Ballot{}))
	if err := a.Recover(early); !errors.Is(err, ErrHeld) {
		t.Fatalf("Recover while held: %v, want ErrHeld", err)
	}
	if err := a.Release(5, ap.Last()); err != nil {
		t.Fatal(err)
	}
	if a.Ready() {
		t.Fatal("released without storage, the acceptor kept its record")
	}
	if err := a.Recover(early); err == nil {
		t.Fatal("a recovery round from before the release ended the recovery")
	}
	floor, ok := a.Floor()
	if !ok {
		t.Fatal("no floor after release")
	}
	if o := c.run(ap.Recover(0, floor)); a.Recover(o) != nil || string(a.State().Value.Data) != "x" {
		t.Fatalf("recovery after release: %+v, holds %q", o, a.State().Value.Data)
	}
}

// A blank acceptor that is held is blank no more, released or not: the
// other process of its name may have answered any round, so it must not
// start (or count towards) a new election.
func TestHeldAcceptorIsNotBlank(t *testing.T) {
	voters := []string{"a", "b", "c"}
	a, err := NewAcceptor(AcceptorConfig{Name: "a", Voters: voters, Incarnation: 1, Storage: &memDisk{}, MaxAhead: 100, Now: 1000})
	if err != nil {
		t.Fatal(err)
	}
	a.Hold()
	if a.Blank() {
		t.Fatal("a held acceptor is blank")
	}
	if err := a.NewElection(1000, 50); err == nil {
		t.Fatal("a held acceptor started a new election")
	}
	if err := a.Release(1000, Ballot{}); err != nil {
		t.Fatal(err)
	}
	if err := a.NewElection(1000, 50); !errors.Is(err, ErrNotBlank) || a.Blank() {
		t.Fatalf("released: NewElection %v, blank %v; want ErrNotBlank, not blank", err, a.Blank())
	}
}
