package casp

import (
	"container/heap"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// The randomised simulation: voters and clients exchange messages through a
// simulated network with loss, duplication, delay (hence reordering) and
// partitions, voters restart with amnesia, and every client operation
// (create, compare-and-swap, read) is recorded with the result its client
// saw. porcupine then checks each history against a sequential
// compare-and-swap register. Everything is driven by one seed; time is
// virtual (microseconds), so a run is reproducible and fast.

var (
	simSoak = flag.Duration("casp.soak", 0, "run the randomised simulation for this long (e.g. 10m) on top of the CI seeds")
	simSeed = flag.Uint64("casp.seed", 0, "run only this simulation seed (with -v: its faults and results)")
)

// simWeak weakens the acceptors' rules, simWeakRead the proposers' read
// rule and simWeakStall their stall rule (Round.Replace), to show the
// simulation catches it.
var (
	simWeak      weakening
	simWeakRead  weakReadRule
	simWeakStall bool
)

// Persistence modes of the voters in one run.
type simDisk int

const (
	diskNone  simDisk = iota // nothing survives a restart; the floor comes from the clock bound
	diskFloor                // the promise floor survives (fsynced before each promise)
	diskFull                 // promise and record survive (StateDir)
)

func (d simDisk) String() string { return [...]string{"memory", "floor", "full"}[d] }

const (
	simMaxAhead  = 50_000 // µs: acceptors refuse counters further ahead of their clock
	simMaxSkew   = 10_000 // µs: clocks differ by at most this
	simOpTimeout = 400_000
	// simLiveOpTimeout is the operations' timeout in liveness runs: five
	// times RetryPause's cap, so that only a round that waits for ever
	// (not a duel that backs off) reaches it.
	simLiveOpTimeout = 10_000_000
	// simQueryTimeout: a read whose query has not finished by then reads
	// by a round.
	simQueryTimeout = 20_000
	// simResend is the round driver's retransmission interval (the
	// Driver's resend): unanswered messages go again after it, then
	// doubling up to four times it, and the stall rule (Round.Replace) is
	// applied at each of those ticks, as in the glue.
	simResend = 20_000
	// simCrashMidRound is the chance that a voter restarts right after it
	// promised or accepted, so restarts land on every step of a round.
	simCrashMidRound = 0.002
)

type simConfig struct {
	seed    uint64
	voters  int
	clients int // non-voter clients, on top of one per voter
	disk    simDisk
	ops     int // operations per run
	loss    float64
	dup     float64
	delay   uint64 // maximum one-way delay, µs
	// recovery runs the recovery loop's model instead (see
	// sim_recovery_test.go): stateDir says which voters have a StateDir
	// (full persistence; the others keep nothing), any number of voters
	// restart with their state kept or lost, and the histories are
	// checked against the recovery specification, not porcupine.
	recovery bool
	stateDir []bool
	// live runs the liveness check instead (see simLiveConfigFor): the
	// last voter is down throughout (every link to it cut, it starts no
	// operation), nothing else fails, and an operation that reaches its
	// timeout is counted (sim.timeouts), not only dropped or unknown.
	live bool
}

type simEvent struct {
	at   uint64
	seq  uint64
	node string
	gen  int // the process generation a timer belongs to
	msg  *Message
	fn   func()
}

type eventQueue []*simEvent

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*simEvent)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	*q = old[:len(old)-1]
	return e
}

type memDisk struct {
	st State
	ok bool
}

func (d *memDisk) Load() (State, bool, error) { return d.st, d.ok, nil }
func (d *memDisk) Save(st State) error        { d.st, d.ok = st, true; return nil }

type simNode struct {
	name    string
	voter   bool
	skew    uint64
	gen     int
	acc     *Acceptor
	disk    *memDisk
	prop    *Proposer
	recover *Round
	op      *simOp
	// nextInc hands out incarnations: unique per node and generation.
	nextInc uint64
	// The recovery loop (recovery runs only): this process's clock and
	// its current attempt's tally; what the specification knows of it.
	reinit ReinitClock
	tally  *RecoveryTally
	spec   specNode
}

// simOp is one client operation in flight.
type simOp struct {
	id     int
	in     casInput
	call   uint64
	round  *Round   // the current round: a query, or drv's
	drv    *Driver  // the round driver of the current attempt (nil while a query runs)
	rounds []Ballot // the ballots of drv's rounds: their replies go to drv, as to the glue's
	mine   []Ballot // ballots of this op's earlier write rounds whose outcome is unknown
	cands  []regState
	change Change
	cur    Value // the value the change last saw (recovery runs: a write's parent)
	// began is when the op's current attempt started (a round replaced
	// by the stall rule continues it), pause its last retry pause (see
	// RetryPause).
	began uint64
	pause time.Duration
}

type sim struct {
	t       testing.TB
	cfg     simConfig
	rng     *rand.Rand
	now     uint64
	seq     uint64
	q       eventQueue
	voters  []string
	nodes   map[string]*simNode
	names   []string
	cut     map[[2]string]bool
	history []porcupine.Operation
	done    int
	started int
	// figures
	restarts, recoveries, unknown, msgs int
	timeouts                            int              // operations that reached simOpTimeout
	fastReads                           int              // rounds finished on their promises alone
	prepared, adopted                   int              // rounds that skipped their prepare phase; prepare phases handed over and adopted
	queries                             int              // reads answered by a query
	newReads                            int              // queries that proved the register new
	tokens                              map[string]Token // what each client last saw
	rec                                 *recSpec         // recovery runs: the specification's view
}

func newSim(t testing.TB, cfg simConfig) *sim {
	s := &sim{t: t, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.seed, cfg.seed^0x9e3779b97f4a7c15)),
		nodes: map[string]*simNode{}, cut: map[[2]string]bool{}, tokens: map[string]Token{}}
	if cfg.recovery {
		s.rec = newRecSpec()
	}
	for i := range cfg.voters {
		s.voters = append(s.voters, fmt.Sprintf("v%d", i))
	}
	for i := range cfg.voters + cfg.clients {
		name := fmt.Sprintf("v%d", i)
		if i >= cfg.voters {
			name = fmt.Sprintf("c%d", i-cfg.voters)
		}
		n := &simNode{name: name, voter: i < cfg.voters, skew: s.rng.Uint64N(simMaxSkew + 1), disk: &memDisk{}}
		if cfg.live {
			// One clock: with skew, a voter whose clock is behind the
			// others refuses the first ballots above their floors as
			// too far ahead (NackAhead), which the stall rule does not
			// replace (see TestSimulationLiveWithOneVoterDown).
			n.skew = 0
		}
		s.nodes[name] = n
		s.names = append(s.names, name)
	}
	return s
}

func (s *sim) clock(n *simNode) uint64 { return s.now + n.skew }

func (s *sim) schedule(at uint64, e *simEvent) {
	s.seq++
	e.at, e.seq = at, s.seq
	heap.Push(&s.q, e)
}

func (s *sim) after(n *simNode, d uint64, fn func()) {
	s.schedule(s.now+d, &simEvent{node: n.name, gen: n.gen, fn: fn})
}

// start brings up node n's processes: a fresh incarnation of its proposer
// and, for a voter, of its acceptor (from its disk, per the run's mode).
func (s *sim) start(n *simNode, fresh bool) {
	n.gen++
	n.nextInc++
	inc := n.nextInc<<8 | uint64(len(n.name)) // unique per process
	p, err := NewProposer(ProposerConfig{Node: n.name, Incarnation: inc, Voters: s.voters})
	if err != nil {
		s.t.Fatal(err)
	}
	p.weakRead = simWeakRead
	p.weakStall = simWeakStall
	n.prop, n.recover, n.op = p, nil, nil
	if n.voter {
		cfg := AcceptorConfig{Name: n.name, Voters: s.voters, Incarnation: inc, MaxAhead: simMaxAhead, Now: s.clock(n)}
		switch s.cfg.disk {
		case diskFloor:
			cfg.Storage = n.disk
		case diskFull:
			cfg.Storage, cfg.PersistRecord = n.disk, true
		}
		if s.cfg.recovery {
			cfg.Storage, cfg.PersistRecord = nil, false
			if s.stateDir(n) {
				cfg.Storage, cfg.PersistRecord = n.disk, true
			}
		}
		a, err := NewAcceptor(cfg)
		if err != nil {
			s.t.Fatal(err)
		}
		a.weak = simWeak
		n.acc = a
		if s.cfg.recovery {
			s.startRecovery(n)
		} else if fresh {
			if err := a.Reinitialize(); err != nil {
				s.t.Fatal(err)
			}
		} else if !a.Ready() {
			s.after(n, 1000, func() { s.recoverStep(n) })
		}
	}
	s.after(n, s.rng.Uint64N(20_000), func() { s.nextOp(n) })
}

func (s *sim) recoverStep(n *simNode) {
	if n.acc.Ready() {
		return
	}
	floor, ok := n.acc.Floor()
	if !ok {
		s.t.Fatalf("%s: no floor to recover above", n.name)
	}
	n.recover = n.prop.Recover(s.clock(n), floor)
	s.sendAll(n, n.recover.Prepares())
	s.after(n, 20_000+s.rng.Uint64N(20_000), func() { s.recoverStep(n) })
}

func (s *sim) sendAll(from *simNode, ms []Message) {
	for _, m := range ms {
		s.send(from, m)
	}
}

func (s *sim) send(from *simNode, m Message) {
	s.msgs++
	copies := 1
	if s.rng.Float64() < s.cfg.dup {
		copies = 2
	}
	for range copies {
		if s.rng.Float64() < s.cfg.loss || s.cut[[2]string{m.From, m.To}] {
			continue
		}
		mm := m
		s.schedule(s.now+1+s.rng.Uint64N(s.cfg.delay), &simEvent{node: m.To, msg: &mm})
	}
}

func (s *sim) deliver(n *simNode, m Message) {
	if s.cut[[2]string{m.From, m.To}] {
		return
	}
	switch m.Kind {
	case KindPrepare, KindAccept, KindQuery:
		if n.acc == nil {
			return
		}
		reply, err := n.acc.Handle(s.clock(n), m)
		if err != nil {
			s.t.Fatal(err)
		}
		if s.rec != nil {
			s.rec.handled(s, n, m, reply)
		}
		// Now and then the voter dies right after a promise or an accept:
		// after saving (if it saves) and before or after its reply leaves.
		crash := !s.cfg.live && reply != nil && reply.Kind != KindNack && s.rng.Float64() < simCrashMidRound
		if crash && s.rng.IntN(2) == 0 && s.crashVoter(n) {
			return
		}
		if reply != nil {
			s.send(n, *reply)
		}
		if crash {
			s.crashVoter(n)
		}
	default:
		if r := n.recover; r != nil && r.Ballot() == m.Ballot {
			if n.tally != nil {
				n.tally.Add(m)
			}
			out, err := r.Handle(m)
			if err != nil {
				s.t.Fatal(err)
			}
			s.sendAll(n, out)
			if o := r.Outcome(); o.Status == Chosen && !n.acc.Ready() {
				if err := n.acc.Recover(o); err != nil {
					s.t.Fatal(err)
				}
				s.recoveries++
				if s.rec != nil {
					s.rec.recovered(s, n, o)
				}
			}
			return
		}
		op := n.op
		switch {
		case op == nil:
		case op.drv != nil:
			if op.drv.Done() || !slices.Contains(op.rounds, m.Ballot) {
				return
			}
			out, _, err := op.drv.Handle(m)
			if err != nil {
				s.t.Fatal(err)
			}
			s.sendAll(n, out)
			s.noteWrite(op)
			if op.drv.Done() {
				s.roundProgress(n, op)
			}
		case op.round != nil && op.round.Ballot() == m.Ballot && op.round.Outcome().Status == Pending:
			// A query, which the glue runs without a driver.
			out, err := op.round.Handle(m)
			if err != nil {
				s.t.Fatal(err)
			}
			s.sendAll(n, out)
			s.roundProgress(n, op)
		}
	}
}

// nextOp starts a client operation on node n.
func (s *sim) nextOp(n *simNode) {
	if n.op != nil || s.started >= s.cfg.ops || (s.cfg.live && n.name == s.voters[len(s.voters)-1]) {
		return
	}
	s.started++
	op := &simOp{id: s.started, call: s.now}
	data := fmt.Sprintf("%s#%d", n.name, op.id)
	tok, known := s.tokens[n.name]
	switch x := s.rng.IntN(10); {
	case x < 4:
		op.in = casInput{kind: opRead}
	case x < 6 || !known:
		op.in = casInput{kind: opCreate, data: data}
	default:
		op.in = casInput{kind: opSwap, expect: tok, data: data}
	}
	n.op = op
	op.change = s.change(op)
	gen := n.gen
	if op.in.kind == opRead && s.rng.IntN(4) != 0 {
		// Most reads query first, as the glue's Get does, and read by a
		// round if the query fails or takes too long.
		q := n.prop.Query(s.clock(n))
		op.round = q
		s.sendAll(n, q.Prepares())
		s.after(n, simQueryTimeout, func() {
			if n.gen == gen && n.op == op && op.round == q && q.Outcome().Status == Pending {
				s.runRound(n, op)
			}
		})
	} else {
		s.runRound(n, op)
	}
	timeout := uint64(simOpTimeout)
	if s.cfg.live {
		timeout = simLiveOpTimeout
	}
	s.after(n, timeout, func() {
		if n.gen == gen && n.op == op {
			s.timeouts++
			s.giveUp(n, op)
		}
	})
}

var (
	errMine      = errors.New("the register holds this operation's own earlier write")
	errAmbiguous = errors.New("an earlier write of this operation may or may not have been chosen")
)

// change is the operation's change. After a write round whose outcome is
// unknown, the retry recognises the operation's own write by its ballot, the
// way the glue does.
func (s *sim) change(op *simOp) Change {
	return func(cur Value) ([]byte, bool, error) {
		op.cur = cur
		if op.in.kind == opRead {
			return nil, false, nil
		}
		if slices.Contains(op.mine, cur.Written) && string(cur.Data) == op.in.data {
			return nil, false, errMine
		}
		var base Change
		if op.in.kind == opCreate {
			base = Create([]byte(op.in.data))
		} else {
			base = Swap(op.in.expect, []byte(op.in.data))
		}
		data, write, err := base(cur)
		if err != nil && len(op.mine) > 0 {
			return nil, false, errAmbiguous
		}
		return data, write, err
	}
}

// runRound starts an attempt of op: a Driver whose rounds are op's, as
// the glue's Lock.round.
func (s *sim) runRound(n *simNode, op *simOp) {
	op.began = s.now
	op.rounds = nil
	op.drv = NewDriver(func() *Round { return s.startRound(n, op) }, simResend*time.Microsecond, false)
	s.sendAll(n, op.drv.Start(s.vtime()))
	s.roundStarted(op)
	s.tick(n, op, op.drv)
}

// startRound starts one of op's rounds.
func (s *sim) startRound(n *simNode, op *simOp) *Round {
	if s.rng.IntN(4) == 0 {
		// Hand the next round's prepare phase to another node, as a
		// release does: usually to its current process, sometimes to an
		// earlier one (an address the heir has restarted from).
		heir := s.nodes[s.names[s.rng.IntN(len(s.names))]]
		inc := heir.prop.cfg.Incarnation
		if s.rng.IntN(8) == 0 && heir.nextInc > 1 {
			inc -= 1 << 8
		}
		return n.prop.StartFor(s.clock(n), op.change, func(Value) (string, uint64) { return heir.name, inc })
	}
	return n.prop.Start(s.clock(n), op.change)
}

// roundStarted notes the round op.drv has just started.
func (s *sim) roundStarted(op *simOp) {
	op.round = op.drv.Round()
	op.rounds = append(op.rounds, op.round.Ballot())
	s.noteWrite(op)
	if op.round.SkipsPrepare() {
		s.prepared++
	}
}

// vtime is the virtual time as the Driver takes it.
func (s *sim) vtime() time.Time { return time.UnixMicro(int64(s.now)) }

// tick is the round driver's tick for driver d of op, at d.Next() while d
// is not done: the Driver sends unanswered messages again, or its stall
// rule (Round.Replace) abandons the round and starts a full one at once,
// as in the glue (a round that skipped its prepare phase with a promiser
// down or cut off; one a voter refused).
func (s *sim) tick(n *simNode, op *simOp, d *Driver) {
	gen := n.gen
	s.schedule(uint64(d.Next().UnixMicro()), &simEvent{node: n.name, gen: gen, fn: func() {
		if n.gen != gen || n.op != op || op.drv != d || d.Done() {
			return
		}
		send, abandoned := d.Tick(s.vtime())
		if abandoned != nil {
			if o := abandoned.Outcome(); o.Wrote {
				s.remember(op, o)
			}
		}
		s.sendAll(n, send)
		if abandoned != nil {
			s.roundStarted(op)
		}
		s.tick(n, op, d)
	}})
}

// handOver sends a chosen round's prepare phase to its heir, through the
// network: it may be lost, duplicated, delayed past the heir's restart.
func (s *sim) handOver(from *simNode, heir string, rd Prepared) {
	copies := 1
	if s.rng.Float64() < s.cfg.dup {
		copies = 2
	}
	for range copies {
		if s.rng.Float64() < s.cfg.loss || s.cut[[2]string{from.name, heir}] {
			continue
		}
		s.schedule(s.now+1+s.rng.Uint64N(s.cfg.delay), &simEvent{fn: func() {
			if s.nodes[heir].prop.Adopt(rd) {
				s.adopted++
			}
		}})
	}
}

func (s *sim) roundProgress(n *simNode, op *simOp) {
	o := op.round.Outcome()
	switch o.Status {
	case Chosen:
		if o.Prepared != nil {
			s.handOver(n, o.Prepared.Ballot.Node, *o.Prepared)
		}
		if op.round.query {
			s.queries++
			if o.New {
				s.newReads++
			}
		} else if !op.round.sent {
			s.fastReads++
		}
		out := casOutput{value: stateOf(o.Value)}
		switch {
		case errors.Is(o.Err, errMine) || (o.Err == nil && o.Wrote):
			out.kind = outOK
		case errors.Is(o.Err, errAmbiguous):
			s.finishUnknown(n, op)
			return
		case o.Err != nil:
			out.kind = outConflict
		case o.New:
			out.kind = outNew
		default:
			out.kind = outRead
		}
		if o.Value.IsEmpty() {
			delete(s.tokens, n.name)
		} else {
			s.tokens[n.name] = o.Value.Token()
		}
		s.finish(n, op, out)
	case Failed:
		if o.Wrote {
			s.remember(op, o)
		}
		if op.round.query {
			// As the glue's Get does: a failed query is followed at once
			// by a read by a round, with no pause (no round of this op
			// has run, so there is no duration for RetryPause either).
			s.runRound(n, op)
			return
		}
		// As the glue does: a random pause between half the retry
		// pause and all of it (RetryPause).
		op.pause = RetryPause(op.pause, time.Duration(s.now-op.began)*time.Microsecond)
		pause := uint64(op.pause / time.Microsecond)
		gen := n.gen
		s.after(n, pause/2+s.rng.Uint64N(pause/2+1), func() {
			if n.gen == gen && n.op == op {
				s.runRound(n, op)
			}
		})
	}
}

// remember notes a write round whose outcome is unknown: the value it
// would have written becomes a candidate outcome of the operation.
func (s *sim) remember(op *simOp, o Outcome) {
	op.mine = append(op.mine, o.Ballot)
	v := op.round.value
	op.cands = append(op.cands, stateOf(v))
}

func (s *sim) giveUp(n *simNode, op *simOp) {
	if o := op.round.Outcome(); o.Status == Pending && o.Wrote {
		s.remember(op, o)
	}
	if len(op.cands) > 0 {
		s.finishUnknown(n, op)
		return
	}
	// No write left this node: the operation had no effect; drop it.
	n.op = nil
	s.done++
	s.after(n, s.rng.Uint64N(20_000), func() { s.nextOp(n) })
}

func (s *sim) finishUnknown(n *simNode, op *simOp) {
	s.unknown++
	s.record(op, casOutput{kind: outUnknown, cands: slices.Clone(op.cands)}, math.MaxInt64)
	n.op = nil
	s.done++
	delete(s.tokens, n.name)
	s.after(n, s.rng.Uint64N(20_000), func() { s.nextOp(n) })
}

func (s *sim) finish(n *simNode, op *simOp, out casOutput) {
	s.record(op, out, int64(s.now))
	n.op = nil
	s.done++
	s.after(n, s.rng.Uint64N(20_000), func() { s.nextOp(n) })
}

func (s *sim) record(op *simOp, out casOutput, ret int64) {
	s.history = append(s.history, porcupine.Operation{ClientId: op.id, Input: op.in, Call: int64(op.call), Output: out, Return: ret})
}

// crash restarts a voter without its memory. Only as many voters may be
// recovering at once as leave a quorum of answering voters; with full disks
// any number may restart.
func (s *sim) crash() { s.crashVoter(s.nodes[s.voters[s.rng.IntN(len(s.voters))]]) }

func (s *sim) crashVoter(v *simNode) bool {
	return s.restartVoter(v, s.cfg.recovery && s.rng.IntN(2) == 0)
}

// restartVoter restarts voter v, its disk emptied first if wipe. Recovery
// runs restart any number of voters at once.
func (s *sim) restartVoter(v *simNode, wipe bool) bool {
	recovering := 0
	for _, name := range s.voters {
		if !s.nodes[name].acc.Ready() {
			recovering++
		}
	}
	if !s.cfg.recovery && s.cfg.disk != diskFull && (!v.acc.Ready() || recovering >= len(s.voters)-Quorum(len(s.voters))) {
		return false
	}
	if op := v.op; op != nil {
		if o := op.round.Outcome(); o.Status == Pending && o.Wrote {
			s.remember(op, o)
		}
		if len(op.cands) > 0 {
			s.unknown++
			s.record(op, casOutput{kind: outUnknown, cands: slices.Clone(op.cands)}, math.MaxInt64)
		}
		s.done++
	}
	if wipe {
		v.disk = &memDisk{} // its StateDir emptied (a lost disk)
	}
	s.restarts++
	s.start(v, false)
	return true
}

func (s *sim) partition() {
	clear(s.cut)
	names := slices.Clone(s.names)
	s.rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	k := 1 + s.rng.IntN(len(names)-1)
	oneWay := s.rng.IntN(3) == 0
	for _, a := range names[:k] {
		for _, b := range names[k:] {
			s.cut[[2]string{a, b}] = true
			if !oneWay {
				s.cut[[2]string{b, a}] = true
			}
		}
	}
}

func (s *sim) faults() {
	switch x := s.rng.IntN(10); {
	case s.cfg.recovery && x < 2:
		s.restartMajority()
	case x < 4:
		s.crash()
	case x < 7:
		s.partition()
	default:
		clear(s.cut)
	}
	s.schedule(s.now+50_000+s.rng.Uint64N(200_000), &simEvent{fn: s.faults})
}

// run simulates until cfg.ops operations have completed and returns the
// history.
func (s *sim) run() []porcupine.Operation {
	for _, name := range s.names {
		s.start(s.nodes[name], true)
	}
	if s.cfg.live {
		down := s.voters[len(s.voters)-1]
		for _, name := range s.names {
			s.cut[[2]string{name, down}], s.cut[[2]string{down, name}] = true, true
		}
	} else {
		s.schedule(s.now+50_000, &simEvent{fn: s.faults})
	}
	for s.done < s.cfg.ops && (s.rec == nil || s.rec.why == "") {
		if len(s.q) == 0 {
			s.t.Fatalf("seed %d: simulation ran dry after %d operations", s.cfg.seed, s.done)
		}
		e := heap.Pop(&s.q).(*simEvent)
		s.now = e.at
		if s.now > 3600e6 {
			s.t.Fatalf("seed %d: no progress: %d of %d operations after an hour of virtual time", s.cfg.seed, s.done, s.cfg.ops)
		}
		switch {
		case e.msg != nil:
			s.deliver(s.nodes[e.node], *e.msg)
		case e.node != "" && s.nodes[e.node].gen != e.gen:
			// a timer of a process that has restarted since
		default:
			e.fn()
		}
	}
	return s.history
}

// The sequential specification: a compare-and-swap register.

type opKind uint8

const (
	opRead opKind = iota
	opCreate
	opSwap
)

type outKind uint8

const (
	outRead outKind = iota
	outOK
	outConflict
	outUnknown
	// outNew: a read that proved the register new (Outcome.New): no
	// write may have taken effect before it.
	outNew
)

type casInput struct {
	kind   opKind
	expect Token
	data   string
}

type casOutput struct {
	kind  outKind
	value regState   // read, ok (the value written), conflict (the value found)
	cands []regState // unknown: the values the operation may have written
}

// regState is the register's value as the model sees it.
type regState struct {
	tok  Token
	data string
}

func stateOf(v Value) regState { return regState{tok: v.Token(), data: string(v.Data)} }

func (in casInput) applies(st regState) bool {
	if in.kind == opCreate {
		return st == regState{}
	}
	return st != regState{} && st.tok == in.expect
}

var casModel = porcupine.NondeterministicModel{
	Init: func() []any { return []any{regState{}} },
	Step: func(state, input, output any) []any {
		st, in, out := state.(regState), input.(casInput), output.(casOutput)
		switch out.kind {
		case outRead:
			if in.kind == opRead && out.value == st {
				return []any{st}
			}
		case outNew:
			// Writes always leave a token, so only the initial state
			// is the register never written.
			if in.kind == opRead && st == (regState{}) {
				return []any{st}
			}
		case outOK:
			if in.applies(st) && out.value.data == in.data {
				return []any{out.value}
			}
		case outConflict:
			if out.value == st && !in.applies(st) {
				return []any{st}
			}
		case outUnknown:
			next := []any{st}
			if in.applies(st) {
				for _, c := range out.cands {
					next = append(next, c)
				}
			}
			return next
		}
		return nil
	},
	Equal: func(a, b any) bool { return a.(regState) == b.(regState) },
	DescribeOperation: func(input, output any) string {
		return fmt.Sprintf("%+v -> %+v", input, output)
	},
}

func simConfigFor(seed uint64) simConfig {
	r := rand.New(rand.NewPCG(seed, 1))
	return simConfig{
		seed:    seed,
		voters:  []int{3, 3, 5}[r.IntN(3)],
		clients: r.IntN(3),
		disk:    simDisk(r.IntN(3)),
		ops:     300,
		loss:    []float64{0, 0.02, 0.1}[r.IntN(3)],
		dup:     []float64{0, 0.05, 0.2}[r.IntN(3)],
		delay:   []uint64{500, 5_000, 30_000}[r.IntN(3)],
	}
}

// simLiveConfigFor is a liveness run: a majority of the voters up and
// connected throughout, one voter down, no message lost, no restart.
// Every operation should then end by its rounds, never by its timeout.
func simLiveConfigFor(seed uint64) simConfig {
	r := rand.New(rand.NewPCG(seed, 2))
	return simConfig{
		seed:    seed,
		voters:  []int{3, 3, 5}[r.IntN(3)],
		clients: 1 + r.IntN(2),
		disk:    diskFull,
		ops:     300,
		dup:     []float64{0, 0.05}[r.IntN(2)],
		delay:   []uint64{500, 5_000}[r.IntN(2)],
		live:    true,
	}
}

// simLive runs liveness seeds 1 to seeds and returns the first that had an
// operation reach its timeout (0 if none did), with that run's figures;
// every history is also checked linearizable.
func simLive(t *testing.T, seeds uint64) (seed uint64, s *sim) {
	for seed := uint64(1); seed <= seeds; seed++ {
		cfg := simLiveConfigFor(seed)
		s := newSim(t, cfg)
		h := s.run()
		if res := porcupine.CheckOperationsTimeout(casModel.ToModel(), h, time.Minute); res != porcupine.Ok {
			t.Fatalf("liveness seed %d (%+v): history of %d operations is %s", seed, cfg, len(h), res)
		}
		if s.timeouts > 0 {
			return seed, s
		}
	}
	return 0, nil
}

// TestSimulationLiveWithOneVoterDown checks the stall rule's liveness: with
// one voter down and nothing else failing, no operation waits for its
// timeout, however the clients' rounds pre-empt each other.
func TestSimulationLiveWithOneVoterDown(t *testing.T) {
	if seed, s := simLive(t, 20); seed != 0 {
		t.Fatalf("liveness seed %d (%+v): %d of %d operations reached their timeout with a majority of the voters up", seed, s.cfg, s.timeouts, s.done)
	}
}

// TestSimulationCatchesStallWithoutReplacing weakens the stall rule to the
// one the simulation used to apply on its own: replace only a round that
// skipped its prepare phase. A round that one voter refused for a higher
// ballot, with another voter down, then waits for the one that is down
// until its caller gives up. The weakening is safe (a round may be
// abandoned at any time, or never), so what the simulation catches is the
// liveness failure, not a history that is not linearizable.
func TestSimulationCatchesStallWithoutReplacing(t *testing.T) {
	simWeakStall = true
	t.Cleanup(func() { simWeakStall = false })
	seed, s := simLive(t, 20)
	if seed == 0 {
		t.Fatal("no liveness seed found an operation that reached its timeout")
	}
	t.Logf("liveness seed %d (%+v): %d of %d operations reached their timeout", seed, s.cfg, s.timeouts, s.done)
}

// simTotals adds up the runs' figures for the test log.
type simTotals struct {
	ops, unknown, restarts, recoveries, msgs, fastReads, queries int
	prepared, adopted, newReads                                  int
}

func (x simTotals) String() string {
	return fmt.Sprintf("%d operations (%d with unknown outcome, %d reads answered by a query, %d of them proving the register new, %d rounds finished on agreeing promises, %d rounds that skipped their prepare phase, %d prepare phases handed over and adopted), %d amnesiac restarts, %d recoveries, %d messages",
		x.ops, x.unknown, x.queries, x.newReads, x.fastReads, x.prepared, x.adopted, x.restarts, x.recoveries, x.msgs)
}

// simulate runs one seed, checks its history and adds its figures to tot.
func simulate(t testing.TB, seed uint64, tot *simTotals) {
	cfg := simConfigFor(seed)
	s := newSim(t, cfg)
	h := s.run()
	res, info := porcupine.CheckOperationsVerbose(casModel.ToModel(), h, time.Minute)
	if res != porcupine.Ok {
		path := fmt.Sprintf("%s/casp-seed-%d.html", t.TempDir(), seed)
		_ = porcupine.VisualizePath(casModel.ToModel(), info, path)
		t.Fatalf("seed %d (%+v): history of %d operations is %s (visualisation: %s)", seed, cfg, len(h), res, path)
	}
	if testing.Verbose() && *simSeed != 0 {
		t.Logf("seed %d %+v: %d ops (%d unknown), %d restarts, %d recoveries, %d messages, %v virtual",
			seed, cfg, len(h), s.unknown, s.restarts, s.recoveries, s.msgs, time.Duration(s.now)*time.Microsecond)
	}
	tot.ops += len(h)
	tot.unknown += s.unknown
	tot.restarts += s.restarts
	tot.recoveries += s.recoveries
	tot.msgs += s.msgs
	tot.fastReads += s.fastReads
	tot.queries += s.queries
	tot.prepared += s.prepared
	tot.adopted += s.adopted
	tot.newReads += s.newReads
}

func TestSimulationHistoriesAreLinearizable(t *testing.T) {
	start := time.Now()
	var tot simTotals
	if *simSeed != 0 {
		simulate(t, *simSeed, &tot)
		return
	}
	seeds := 0
	for seed := uint64(1); tot.ops < 10_000; seed++ {
		simulate(t, seed, &tot)
		seeds++
	}
	t.Logf("%v over %d seeds checked linearizable in %v", tot, seeds, time.Since(start).Round(time.Millisecond))
	if *simSoak > 0 {
		deadline := time.Now().Add(*simSoak)
		for seed := uint64(1_000_000); time.Now().Before(deadline); seed++ {
			simulate(t, seed, &tot)
			seeds++
		}
		t.Logf("soak: %v over %d seeds checked linearizable in %v", tot, seeds, time.Since(start).Round(time.Millisecond))
	}
}

func TestSimulationCatchesAnswerAtOnce(t *testing.T) {
	simWeak = weakening{answerAtOnce: true}
	t.Cleanup(func() { simWeak = weakening{} })
	simFindsViolation(t)
}

// TestSimulationCatchesReadWithoutAgreement weakens the read rule: a read
// (or a refused change) finishes on its promises whether or not the quorum
// agrees on one accepted ballot, reporting the highest. A value accepted by
// a minority is then reported although it may never be chosen.
func TestSimulationCatchesReadWithoutAgreement(t *testing.T) {
	t.Cleanup(func() { simWeakRead = readRuleShipped })
	for name, w := range map[string]weakReadRule{"rounds and queries": readHighest, "queries only": queryHighest} {
		t.Run(name, func(t *testing.T) {
			simWeakRead = w
			simFindsViolation(t, true)
		})
	}
}

// simFindsViolation runs seeds until one history is not linearizable.
// withFullDisks also runs seeds where voters keep all their state (for
// weakenings that need no amnesia).
func simFindsViolation(t *testing.T, withFullDisks ...bool) {
	for seed := uint64(1); seed <= 200; seed++ {
		cfg := simConfigFor(seed)
		if cfg.disk == diskFull && len(withFullDisks) == 0 {
			continue // nothing is forgotten: the weakened rule never applies
		}
		s := newSim(t, cfg)
		h := s.run()
		// A history that is not linearizable can take porcupine long to
		// prove so; give up on it and try the next seed.
		if porcupine.CheckOperationsTimeout(casModel.ToModel(), h, 5*time.Second) != porcupine.Illegal {
			continue
		}
		t.Logf("seed %d (%+v): not linearizable after %d operations, %d restarts", seed, cfg, len(h), s.restarts)
		return
	}
	t.Fatal("no seed found the violation")
}
