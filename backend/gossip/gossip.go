// Package gossip is a leader-election lock with no store at all: the
// candidates are the store. hashicorp/memberlist gives membership, failure
// detection, an encrypted transport and a Label per election; a small
// compare-and-swap register (CASPaxos, arXiv 1802.07000) among a static, odd
// list of voters gives the lock its compare-and-swap.
//
// Every write is one CASPaxos round: prepare to the voters, promises from a
// majority (each reporting the record it accepted last), the
// compare-and-swap check against the version this handle last read, accept
// to the same majority, accepted. A round that cannot gather a majority
// within its context is an error, never a success, so a candidate cut off
// from most voters cannot renew and steps down; only a side of a partition
// that holds a majority of the voters can elect.
//
// Each chosen write is pushed to every member, so followers' Watcher wakes
// within milliseconds of a renewal or a release. A follower's Get is served
// from the newest pushed record another candidate wrote, so followers send
// nothing while the leader renews; after a failed call or a lost race it
// reads a majority, by a query that promises nothing (readers pre-empt no
// round) and, if the voters' reports disagree, by a round. Update is a
// compare-and-swap whatever Get served. Candidates taking a released or
// expired record over take turns (a rank from a hash of their name and the
// record's version), so that one round, not a duel of many, takes it.
//
// See docs/backends/gossip.md for the safety argument, what partitions and
// restarts do, message counts and tuning.
package gossip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
	"github.com/b3df926d/leaderelection/internal/notify"
	"github.com/b3df926d/leaderelection/lock"
)

// Lock is one candidate in one election: a transport (a memberlist
// member), a proposer and, on voters, an acceptor. It implements
// lock.Interface and lock.Watcher; its methods are safe for concurrent
// use. Close it to leave the cluster.
type Lock struct {
	s    *settings
	tr   *transport
	log  logr.Logger
	m    *metrics
	desc string
	hub  notify.Hub

	acc   *casp.Acceptor // nil on a non-voter
	accMu sync.Mutex
	// accWritten is the write the acceptor holds, accSince when this
	// process first saw it hold that write (for a write loaded from
	// StateDir: at the first request after the start, later than it was
	// accepted), so that its replies can say how long ago, at most, the
	// write began (see Age).
	accWritten casp.Ballot
	accSince   time.Time
	// recovering is set while recoverLoop runs (under accMu; see
	// recoverLocked); guarded is the last transport.rivalGen the guard has
	// released the acceptor after.
	recovering bool
	guarded    atomic.Uint64

	prop   *casp.Proposer
	propMu sync.Mutex    // guards prop and its rounds
	rounds chan struct{} // one round at a time

	resend  time.Duration // retransmission of unanswered messages
	reinit  time.Duration
	started time.Time

	mu        sync.Mutex
	token     casp.Token
	haveToken bool
	// maxTerm is the highest LeaderTransitions this candidate has seen;
	// released is true when Get reported an empty register as a released
	// record at that term, provedNew when it reported it never written
	// (see remember).
	maxTerm   int
	released  bool
	provedNew bool
	corrupt   error
	unsure    []casp.Ballot // ballots of own writes whose outcome is unknown
	latest    casp.Value    // newest chosen value known
	latestRec *lock.Record  // latest decoded; nil if empty or corrupt
	// latestBy is a time on this process's clock no earlier than the
	// start of latest's write: when it was learned, or earlier when the
	// voters said how long ago they accepted it (see Age).
	latestBy time.Time
	// bounds are such times for values the replies of a running read or
	// round reported, by their write's ballot, until one is learned.
	bounds     map[casp.Ballot]time.Time
	haveLatest bool
	distrust   bool          // a round failed: the next Get reads a majority
	learned    chan struct{} // closed and replaced when latest changes
	// est is a running estimate of how long a write takes its proposer
	// (this candidate's own writes and those pushed by others): the unit
	// of a turn (see turn). Zero until the first sample.
	est time.Duration
	// turnTaken is the token of the record a Get waited its turn for and
	// then read, so that the Update that follows does not wait again.
	turnTaken     casp.Token
	haveTurnTaken bool

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once

	// replied, if set (by tests), is called after this voter's acceptor
	// answered a request, with the reply's kind and the requester.
	replied atomic.Pointer[func(k kind, to string)]
	// onRelease, if set (by tests), is called with each release this
	// candidate's writes have chosen, before it is pushed.
	onRelease atomic.Pointer[func(v casp.Value)]
	// pushed, if set (by tests), is called with each push this candidate
	// receives, as it arrives.
	pushed atomic.Pointer[func(e *envelope)]
}

var (
	_ lock.Interface = (*Lock)(nil)
	_ lock.Watcher   = (*Lock)(nil)
	_ lock.Aged      = (*Lock)(nil)
)

// maxAhead bounds ballot counters (Unix milliseconds) to a voter's clock:
// a proposer's clock may run at most this far ahead of a voter's, and a
// voter restarted without StateDir takes its clock plus this as the floor
// above every ballot it may have promised before (assuming its clock did not
// step back across the restart).
const maxAhead = 10 * time.Second

// DefaultReinitializeAfter is how long a majority of the voters must have
// been without their record (a full restart without StateDir) before they
// start the register afresh: client-go's default LeaseDuration plus
// RenewDeadline, so that any earlier leader has stepped down.
const DefaultReinitializeAfter = 25 * time.Second

// New validates opts, starts memberlist on Options.Bind, joins the seeds
// and returns the lock. It returns once listening; members that are not up
// yet are joined later (and seeds re-joined every RejoinInterval). A voter
// that starts without its record (no StateDir, or an empty one) answers
// nothing until it has recovered it from a majority of the other voters;
// see Ready.
func New(ctx context.Context, opts Options) (*Lock, error) {
	s, err := opts.validate()
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("gossip %s: %w", s.Name, err)
	}
	logger := klog.Background()
	if s.Logger != nil {
		logger = *s.Logger
	}
	desc := "gossip:" + s.Name
	logger = logger.WithValues("lock", desc, "identity", s.Identity)
	m, err := newMetrics(s.Registerer, s.Name)
	if err != nil {
		return nil, fmt.Errorf("%s: Options.Registerer: %w", desc, err)
	}
	l := &Lock{
		s: s, log: logger, m: m, desc: desc,
		rounds:  make(chan struct{}, 1),
		learned: make(chan struct{}),
		reinit:  DefaultReinitializeAfter,
		stop:    make(chan struct{}),
		started: time.Now(),
	}
	if s.ReinitializeAfter > 0 {
		l.reinit = s.ReinitializeAfter
	}
	mlc, _ := s.Preset.config()
	l.resend = 2 * max(mlc.ProbeTimeout, 100*time.Millisecond)

	tr, err := newTransport(s, logger, m)
	if err != nil {
		return nil, err
	}
	l.tr = tr
	tr.handle = l.handle
	if len(s.key) == 0 {
		logger.Info("WARNING: running without encryption (Options.Insecure): anyone who can reach this port can join the election and forge votes")
	}
	l.prop, err = casp.NewProposer(casp.ProposerConfig{Node: s.Identity, Incarnation: tr.inc, Voters: s.Voters})
	if err != nil {
		tr.close(true)
		return nil, fmt.Errorf("%s: %w", desc, err)
	}
	if s.voter {
		cfg := casp.AcceptorConfig{
			Name: s.Identity, Voters: s.Voters, Incarnation: tr.inc,
			MaxAhead: uint64(maxAhead.Milliseconds()), Now: nowMillis(),
		}
		if s.StateDir != "" {
			cfg.Storage = newFileStorage(s.StateDir, s.Name)
			cfg.PersistRecord = true
		}
		l.acc, err = casp.NewAcceptor(cfg)
		if err != nil {
			tr.close(true)
			return nil, fmt.Errorf("%s: Options.StateDir: %w", desc, err)
		}
	}
	tr.ready.Store(true) // after handle, acc and prop: receive may use them now
	tr.start()
	if l.acc != nil {
		// A restart's predecessor that memberlist still shows alive (the
		// seed has not heard of its end yet) is proven gone now, if its
		// port refuses, so that the restart is ready as New returns.
		tr.proveGone()
		l.guardStep()
		l.accMu.Lock()
		if !l.acc.Ready() {
			logger.Info("Voter starts without its record: recovering it from the other voters before answering")
			l.recoverLocked()
		}
		l.accMu.Unlock()
		l.wg.Add(1)
		go l.guard()
	}
	return l, nil
}

// recoverLocked runs recoverLoop, unless it runs already, until the
// acceptor answers or the lock stops. accMu is held.
func (l *Lock) recoverLocked() {
	if l.recovering {
		return
	}
	l.recovering = true
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			l.wg.Add(1) // recoverLoop's
			l.recoverLoop()
			l.accMu.Lock()
			again := !l.acc.Ready()
			select {
			case <-l.stop:
				again = false
			default:
			}
			l.recovering = again
			l.accMu.Unlock()
			if !again {
				return
			}
		}
	}()
}

// sole reports whether this voter's acceptor may answer: memberlist shows
// no other live process of its identity (transport.rivals), and the guard has
// released the acceptor since the last one showed up. See "Two live
// processes with one identity" in docs/backends/gossip.md.
func (l *Lock) sole() bool {
	return l.tr.rivals.Load() == 0 && l.tr.rivalGen.Load() == l.guarded.Load()
}

// guard holds this voter's acceptor while another live process of its
// identity shows (it answers nothing, nor recovers), and releases it once
// none does: the acceptor then starts over as after a restart (see
// casp.Acceptor.Release), since the other may have answered meanwhile.
func (l *Lock) guard() {
	defer l.wg.Done()
	var retry <-chan time.Time
	for {
		l.tr.mu.Lock()
		ch := l.tr.changed
		l.tr.mu.Unlock()
		if !l.guardStep() {
			retry = time.After(l.resend)
		}
		select {
		case <-l.stop:
			return
		case <-ch:
		case <-retry:
			retry = nil
		}
	}
}

// guardStep is one step of guard: it holds the acceptor if a rival has
// shown since the last release, and releases it if none is left. It
// reports false if the release failed (to be retried).
func (l *Lock) guardStep() bool {
	l.tr.mu.Lock() // rivalsLocked sets both under it
	gen, rivals := l.tr.rivalGen.Load(), l.tr.rivals.Load()
	l.tr.mu.Unlock()
	if gen == l.guarded.Load() {
		return true
	}
	l.accMu.Lock()
	l.acc.Hold()
	l.accMu.Unlock()
	if rivals != 0 {
		return true
	}
	l.propMu.Lock()
	above := l.prop.Last()
	l.propMu.Unlock()
	l.accMu.Lock()
	err := l.acc.Release(nowMillis(), above)
	ready := l.acc.Ready()
	if err == nil && !ready {
		l.recoverLocked()
	}
	l.accMu.Unlock()
	if err != nil {
		l.log.Error(err, "Could not release the acceptor after the other process of this identity went; retrying")
		return false
	}
	l.guarded.Store(gen)
	l.log.Info("No other process of this identity is alive: the acceptor starts over", "answers", ready)
	return true
}

func nowMillis() uint64 { return uint64(time.Now().UnixMilli()) }

// Identity returns this candidate's identity.
func (l *Lock) Identity() string { return l.s.Identity }

// Describe names the lock: "gossip:" and the election's name.
func (l *Lock) Describe() string { return l.desc }

// RecordEvent logs a leadership event; there is no store to record it in.
func (l *Lock) RecordEvent(s string) { l.log.Info("Leadership event", "event", s) }

// Changes signals when a record written by another candidate reaches this
// one (pushed by its writer), and once at the start.
func (l *Lock) Changes(ctx context.Context) <-chan struct{} {
	ch := l.hub.Subscribe(ctx)
	l.hub.Notify()
	return ch
}

// Ready reports nil once this candidate can take part: a voter has its
// record (restored from StateDir, recovered from the other voters, or the
// register re-initialised). leaderelection.Run and NewHealthServer serve it
// as the /readyz check "gossip" (lock.ReadinessChecker), so that a rolling
// restart waits for each voter to recover before restarting the next.
func (l *Lock) Ready() error {
	if l.acc == nil {
		return nil
	}
	l.accMu.Lock()
	defer l.accMu.Unlock()
	if l.acc.Held() || !l.sole() {
		return fmt.Errorf("%s: voter %s does not answer while another live process claims its identity", l.desc, l.s.Identity)
	}
	if !l.acc.Ready() {
		return fmt.Errorf("%s: voter %s is recovering its record from the other voters", l.desc, l.s.Identity)
	}
	return nil
}

// ReadinessName names Ready's check on /readyz: /readyz/gossip.
func (l *Lock) ReadinessName() string { return "gossip" }

var _ lock.ReadinessChecker = (*Lock)(nil)

// NumMembers is how many candidates (identities) memberlist sees alive,
// this one included. A restarted process counts once, even while its
// crashed predecessor is not yet declared dead.
func (l *Lock) NumMembers() int { return l.tr.numMembers() }

// Addr is the "host:port" this candidate listens on, for Options.Join of
// others.
func (l *Lock) Addr() string { return l.tr.addr }

// Close leaves the cluster and stops every goroutine of the lock. It does
// not release the record: the elector does that before. Call it before the
// process exits: it waits for the pushes of a release, which tell the
// other candidates (the first in turn at once, the others a turn step
// later); a process that exits without it loses those still in flight,
// and the others wait out the lease.
func (l *Lock) Close() error {
	l.shutdown(true)
	return nil
}

// shutdown stops the lock; without leave it vanishes as a crashed process
// does, and the others notice by failure detection.
func (l *Lock) shutdown(leave bool) {
	l.closeOnce.Do(func() {
		close(l.stop)
		l.wg.Wait()
		l.tr.close(leave)
	})
}

// Get returns the record and remembers its version for Update. It is served
// from the newest record pushed to this candidate (or learned by its own
// rounds) when another candidate wrote it: held, released, or with its
// lease run out. Update is a compare-and-swap whatever Get served, so a
// stale record costs a lost race, never a second leader, and that lost
// race learns the register's value. After a failed call or a lost race
// decided by a push, before anything is known, and for this candidate's
// own records, Get reads a majority: a query first, which promises nothing
// (so many readers duel with nobody), then a round if the voters' reports
// do not agree.
func (l *Lock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, fmt.Errorf("%s: get: %w", l.desc, err)
	}
	if v, ok := l.cached(); ok {
		return l.remember(v, false)
	}
	waited := false
	out, ok, maybeNew := l.query(ctx, l.resend)
	for !ok && maybeNew && time.Since(l.started) < max(newElectionQuiet*l.resend, l.reinit) {
		// Every voter that answered is blank and holds nothing: a new
		// election, some voters still recovering or slow to answer.
		// Ask again rather than read by a round, whose prepares would
		// end their blankness and with it the proof that the lock is
		// new (docs/backends/gossip.md, "A new lock"). For at most as
		// long as a voter that started the new election refuses rounds
		// anyway, or the voters would wait to re-initialise the register
		// if one of them never answers (then no voter can start a new
		// election, and no round succeed before).
		t := time.NewTimer(l.resend / 4)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, nil, fmt.Errorf("%s: get: %w", l.desc, ctx.Err())
		case <-l.stop:
			t.Stop()
			return nil, nil, fmt.Errorf("%s: get: lock closed", l.desc)
		case <-t.C:
		}
		out, ok, maybeNew = l.query(ctx, l.resend)
	}
	if !ok && !l.knowsNothing() {
		// The reports disagreed (most often: a write in flight, say the
		// new leader's first renewal, which the losers of a take-over
		// would pre-empt by a round) or came late: ask once more, for
		// longer, before reading by a round.
		out, ok, _ = l.query(ctx, 2*l.resend)
	}
	if !ok {
		// Candidates that start together, or that lost one race
		// together, read together: take turns for the round too (a
		// round pre-empts the others', and the leader's), and serve a
		// write pushed meanwhile (it is newer than anything known).
		waited = true
		if l.takeTurn(ctx, func() bool { _, ok := l.cached(); return ok }) {
			if v, ok := l.cached(); ok {
				return l.remember(v, false)
			}
		}
	}
	if !ok {
		var err error
		out, err = l.run(ctx, "get", func(now uint64) *casp.Round { return l.prop.Start(now, casp.Read) })
		if err != nil {
			return nil, nil, err
		}
	}
	l.learn(out.Value, true, false)
	if waited {
		l.mu.Lock()
		l.turnTaken, l.haveTurnTaken = out.Value.Token(), true
		l.mu.Unlock()
	}
	return l.remember(out.Value, out.New)
}

// query reads the register without a promise (casp.Proposer.Query), so
// that many candidates reading at once pre-empt nobody. It reports false if
// the voters' reports do not agree (a write in flight, voters behind, a
// voter down) soon after a quorum has reported, or within the given time:
// the caller then asks again or reads by a round. maybeNew says the
// answers, if any, left open a proof that the lock is new
// (casp.Round.MayBeNew); the query then waits the whole time for every
// voter.
func (l *Lock) query(ctx context.Context, within time.Duration) (out casp.Outcome, ok, maybeNew bool) {
	qctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	select {
	case l.rounds <- struct{}{}:
	case <-qctx.Done():
		// Another round holds the slot (this voter's own recovery
		// round, as a new election starts): nothing was learned.
		return casp.Outcome{}, false, true
	}
	defer func() { <-l.rounds }()
	l.propMu.Lock()
	r := l.prop.Query(nowMillis())
	qs := r.Prepares()
	l.propMu.Unlock()
	id, replies, done := l.tr.open(2*len(l.s.Voters) + 2)
	defer done()
	for _, m := range qs {
		l.tr.sendMsg(id, m)
	}
	began := time.Now()
	heard := map[string]bool{}
	mayBeNew := func() bool {
		l.propMu.Lock()
		defer l.propMu.Unlock()
		return r.MayBeNew()
	}
	var late <-chan time.Time // once a quorum reported without agreeing
	for {
		select {
		case <-qctx.Done():
			return casp.Outcome{}, false, mayBeNew()
		case <-l.stop:
			return casp.Outcome{}, false, false
		case <-late:
			return casp.Outcome{}, false, false
		case e := <-replies:
			var m casp.Message
			if e.Kind == kindRefused || json.Unmarshal(e.Payload, &m) != nil {
				continue
			}
			m.From = e.From
			l.noteAge(e, m)
			l.propMu.Lock()
			_, err := r.Handle(m)
			out := r.Outcome()
			l.propMu.Unlock()
			if err != nil {
				continue
			}
			heard[m.From] = true
			switch out.Status {
			case casp.Chosen:
				return out, true, false
			case casp.Failed:
				return out, false, mayBeNew()
			}
			if late == nil && len(heard) >= casp.Quorum(len(l.s.Voters)) && !mayBeNew() {
				// The reports disagree so far (a write in flight, a voter
				// behind): the rest get as long again to agree, not the
				// whole interval (a voter may be down).
				t := time.NewTimer(max(time.Since(began), time.Millisecond))
				defer t.Stop()
				late = t.C
			}
		}
	}
}

// knowsNothing reports whether this candidate has learned no value yet.
func (l *Lock) knowsNothing() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.haveLatest
}

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

// cached returns the latest value if Get may serve it (see Get).
func (l *Lock) cached() (casp.Value, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.haveLatest || l.distrust || l.latestRec == nil || l.latestRec.HolderIdentity == l.s.Identity ||
		(l.latestRec.HolderIdentity == "" && l.latest.Written.Node == l.s.Identity) {
		return casp.Value{}, false
	}
	return l.latest, true
}

// remember makes v the version Update compares with, and decodes it.
//
// An empty register after this candidate has seen a record means the
// voters re-initialised it (all restarted without StateDir). Get then
// reports a released record at the highest term seen, rather than no
// record, so that the elector's next term continues above it instead of
// starting again at 1; an Update from it writes only if the register is
// still empty. An empty register that this candidate has not seen
// written, read by a query that proved it new (isNew: casp.Outcome.New),
// is lock.ErrNeverWritten, and a Create that follows holds the register
// to it (docs/backends/gossip.md, "A new lock"). A value without data is
// a record deleted (the conformance suite's harness writes one): not
// found, and not new.
func (l *Lock) remember(v casp.Value, isNew bool) (*lock.Record, []byte, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.released, l.provedNew = false, false
	if !hasRecord(v) && !v.IsEmpty() {
		l.token, l.haveToken, l.corrupt = v.Token(), true, nil
		return nil, nil, lock.NewNotFound(l.desc)
	}
	if v.IsEmpty() {
		l.token, l.haveToken, l.corrupt = v.Token(), false, nil
		if l.maxTerm == 0 && isNew {
			l.provedNew = true
			return nil, nil, lock.NewNeverWritten(l.desc)
		}
		if l.maxTerm == 0 {
			return nil, nil, lock.NewNotFound(l.desc)
		}
		rec := &lock.Record{LeaderTransitions: l.maxTerm}
		raw, _ := json.Marshal(rec)
		l.haveToken, l.released = true, true
		return rec, raw, nil
	}
	rec, err := decodeRecord(v.Data)
	if err != nil {
		l.haveToken, l.corrupt = false, lock.NewCorrupt(l.desc, err)
		return nil, nil, l.corrupt
	}
	l.token, l.haveToken, l.corrupt = v.Token(), true, nil
	l.maxTerm = max(l.maxTerm, rec.LeaderTransitions)
	return rec, bytes.Clone(v.Data), nil
}

// hasRecord reports whether v holds a record: neither the empty register
// nor a record deleted.
func hasRecord(v casp.Value) bool { return len(v.Data) > 0 }

func decodeRecord(data []byte) (*lock.Record, error) {
	var rec lock.Record
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return nil, err
	}
	return &rec, nil
}

// Create writes rec if the register holds no record. After a Get that
// proved the lock new (lock.ErrNeverWritten), it writes only if the
// register is still the empty register, written by nobody since: a record
// written and deleted meanwhile makes it a conflict
// (docs/backends/gossip.md, "A new lock").
func (l *Lock) Create(ctx context.Context, rec lock.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: create: %w", l.desc, err)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("%s: create: encoding record: %w", l.desc, err)
	}
	l.mu.Lock()
	isNew := l.provedNew
	l.provedNew = false
	l.mu.Unlock()
	if isNew {
		return l.write(ctx, "create", data, writeOnNew, func(cur casp.Value) bool { return cur.IsEmpty() })
	}
	return l.write(ctx, "create", data, writePlain, func(cur casp.Value) bool { return !hasRecord(cur) })
}

// Update writes rec if the register still holds the version this handle
// last read or wrote.
func (l *Lock) Update(ctx context.Context, rec lock.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: update: %w", l.desc, err)
	}
	l.mu.Lock()
	token, have, corrupt := l.token, l.haveToken, l.corrupt
	l.mu.Unlock()
	if corrupt != nil {
		return fmt.Errorf("refusing to overwrite: %w", corrupt)
	}
	if !have {
		return fmt.Errorf("%s: update before get or create: no version to compare", l.desc)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("%s: update: encoding record: %w", l.desc, err)
	}
	l.mu.Lock()
	released := l.released
	l.mu.Unlock()
	kind := writePlain
	if rec.HolderIdentity == "" {
		kind = writeRelease
	}
	return l.write(ctx, "update", data, kind, func(cur casp.Value) bool {
		return cur.Token() == token && (hasRecord(cur) || released)
	})
}

// writeKind says how a write's rounds start.
type writeKind uint8

const (
	writePlain writeKind = iota
	// writeRelease: a release (no holder), which hands the prepare phase
	// of the next round to the candidate whose turn comes first to take
	// it over (see push).
	writeRelease
	// writeOnNew: a create made on a proof that the lock is new
	// (casp.Proposer.StartNew).
	writeOnNew
)

// errMismatch refuses a write whose compare-and-swap check failed.
var errMismatch = errors.New("the register holds another version")

// write runs rounds until data is chosen (nil), another version is found
// (a conflict), or ctx ends. ok is the compare-and-swap check. A value
// written by an earlier write of this handle whose outcome was unknown
// passes the check too: nobody else wrote since, so this write follows its
// own. kind says how its rounds start.
func (l *Lock) write(ctx context.Context, op string, data []byte, kind writeKind, ok func(casp.Value) bool) error {
	change := func(cur casp.Value) ([]byte, bool, error) {
		l.mu.Lock()
		mine := !cur.Written.IsZero() && slices.Contains(l.unsure, cur.Written)
		l.mu.Unlock()
		switch {
		case mine && bytes.Equal(cur.Data, data):
			return nil, false, nil // this very write, chosen by a later round
		case mine || ok(cur):
			return data, true, nil
		}
		if !hasRecord(cur) {
			return nil, false, fmt.Errorf("%w: the record is gone", errMismatch)
		}
		return nil, false, fmt.Errorf("%w: %s", errMismatch, cur.Token())
	}
	// While waiting its turn, and between rounds lost to other proposers:
	// a chosen write known (pushed) that fails the check ends the race at
	// once. It is newer than the version compared (pushes are kept only
	// when their ballot is higher, and chosen values' ballots grow along
	// the chain of writes), so the register no longer holds that version:
	// losing to it is linearizable.
	lost := func() error {
		l.mu.Lock()
		defer l.mu.Unlock()
		v := l.latest
		if !l.haveLatest || v.IsEmpty() || slices.Contains(l.unsure, v.Written) || ok(v) {
			return nil
		}
		// Other writes may have followed v: until one is pushed, the next
		// Get reads a majority, so that a Get and Update after this lost
		// race need not lose again to a write already chosen.
		l.distrust = true
		return lock.NewConflict(l.desc, fmt.Errorf("%w: %s was written meanwhile", errMismatch, v.Token()))
	}
	began := time.Now()
	if l.takingOver() {
		var lostErr error
		l.takeTurn(ctx, func() bool { lostErr = lost(); return lostErr != nil })
		if lostErr != nil {
			return lostErr
		}
		began = time.Now()
	}
	start := func(now uint64) *casp.Round { return l.prop.Start(now, change) }
	switch kind {
	case writeRelease:
		start = func(now uint64) *casp.Round { return l.prop.StartFor(now, change, l.heir) }
	case writeOnNew:
		start = func(now uint64) *casp.Round { return l.prop.StartNew(now, change) }
	}
	out, err := l.runUntil(ctx, op, start, lost)
	if err != nil {
		return err
	}
	if out.Err != nil {
		// The round made the current value chosen: it is what Get returns.
		l.learn(out.Value, true, false)
		return lock.NewConflict(l.desc, out.Err)
	}
	l.mu.Lock()
	l.token, l.haveToken, l.corrupt, l.unsure, l.released = out.Value.Token(), true, nil, nil, false
	l.mu.Unlock()
	l.learn(out.Value, true, true)
	if out.Wrote || bytes.Equal(out.Value.Data, data) {
		took := time.Since(began)
		l.noteTook(took)
		if f := l.onRelease.Load(); f != nil && kind == writeRelease {
			(*f)(out.Value)
		}
		l.push(out.Value, took, out.Prepared)
	}
	return nil
}

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

// learn records a chosen value: from a round or a query (authoritative:
// it is the register's value at that point), or pushed (kept only if newer
// than what is known). own is true for this handle's own writes, which
// wake no watcher.
//
// A round's value older than the one known (a push that arrived while the
// round ran: a release just after a candidate started reading) does not
// replace it: chosen values' ballots grow along the chain of writes, so
// the register has moved on, and a follower served the older record from
// its cache would wait out its lease. An empty register is learned
// whatever is known: the voters re-initialised it (see remember).
func (l *Lock) learn(v casp.Value, authoritative, own bool) {
	l.mu.Lock()
	older := l.haveLatest && v.Written.Less(l.latest.Written)
	same := l.haveLatest && v.Written == l.latest.Written
	if (!authoritative && (older || same)) || (authoritative && older && !v.IsEmpty()) {
		l.mu.Unlock()
		return
	}
	changed := !l.haveLatest || !l.latest.Equal(v)
	if changed {
		close(l.learned)
		l.learned = make(chan struct{})
		l.latestBy = time.Now()
		if b, ok := l.bounds[v.Written]; ok && b.Before(l.latestBy) {
			l.latestBy = b
		}
	}
	clear(l.bounds)
	l.latest, l.haveLatest, l.distrust = v, true, false
	l.latestRec = nil
	if hasRecord(v) {
		if rec, err := decodeRecord(v.Data); err == nil {
			l.latestRec = rec
			l.maxTerm = max(l.maxTerm, rec.LeaderTransitions)
		}
	}
	l.mu.Unlock()
	if changed && !own {
		l.hub.Notify()
	}
}

// bound notes that the write with ballot w began no later than at.
func (l *Lock) bound(w casp.Ballot, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b, ok := l.bounds[w]; ok && !at.Before(b) {
		return
	}
	if l.bounds == nil || len(l.bounds) >= 4*len(l.s.Voters) {
		l.bounds = map[casp.Ballot]time.Time{}
	}
	l.bounds[w] = at
}

// noteAge takes a voter's word of how long ago it accepted the value its
// promise or report carries (Age, measured by its own clock as a duration):
// that write began no later than that long before this reply arrived.
func (l *Lock) noteAge(e *envelope, m casp.Message) {
	if e.Age > 0 && !m.Value.IsEmpty() && (m.Kind == casp.KindPromise || m.Kind == casp.KindReport) {
		l.bound(m.Value.Written, time.Now().Add(-micros(e.Age)))
	}
}

// micros is a duration an envelope carries in microseconds (Took, Age),
// kept between zero and an hour whatever a peer sent.
func micros(us int64) time.Duration {
	return time.Duration(min(max(us, 0), int64(time.Hour/time.Microsecond))) * time.Microsecond
}

// Age implements lock.Aged: for the record Get returned as raw, it returns
// a duration no longer than the time since that record's write began, as
// this candidate knows it: since the voters accepted it, by their replies
// (each says how long ago, by its own clock, it accepted the write), or
// since the push that announced it, less the write's duration. A renewal
// whose writer was cut off before pushing it (a crash mid-round) is thus
// learned, at its reader's expiry, with its age: the reader's lease runs
// from the write, as if it had been pushed, not from the late read.
func (l *Lock) Age(raw []byte) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.haveLatest || l.latestBy.IsZero() || !bytes.Equal(raw, l.latest.Data) {
		return 0, false
	}
	return time.Since(l.latestBy), true
}

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
		pause = min(max(2*pause, 2*time.Since(began), time.Millisecond), 2*time.Second)
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

// round runs one round to its end or until ctx ends; unanswered messages
// are sent again every l.resend. refusals names voters that refused for a
// different voter list. seen, if set, sees every reply; it then also
// waits, after a failure, until every voter asked has answered (or ctx
// ends), so that it sees them all.
//
// lost, if set, is asked whenever a new value is learned during the prepare
// phase; if it reports that the call has lost its race, the round ends with
// that error (no accept has gone out, so nothing of it can be chosen).
func (l *Lock) round(ctx context.Context, start func(now uint64) *casp.Round, seen func(*envelope, casp.Message), lost func() error) (out casp.Outcome, refusals []string, err error) {
	l.propMu.Lock()
	r := start(nowMillis())
	pending := r.Prepares()
	l.propMu.Unlock()
	id, replies, done := l.tr.open(4*len(l.s.Voters) + 4)
	defer done()
	answered, heard, asked := map[string]bool{}, map[string]bool{}, len(pending)
	for _, m := range pending {
		l.tr.sendMsg(id, m)
	}
	// Unanswered messages are sent again after l.resend, then after twice
	// as long, and so on: a slow voter is not buried in duplicates.
	every := l.resend
	tick := time.NewTimer(every)
	defer tick.Stop()
	var learned chan struct{}
	for {
		if lost != nil {
			l.mu.Lock()
			learned = l.learned
			l.mu.Unlock()
		}
		select {
		case <-learned:
			if pending[0].Kind == casp.KindPrepare {
				if err := lost(); err != nil {
					l.propMu.Lock()
					out = r.Outcome()
					l.propMu.Unlock()
					return out, refusals, err
				}
			}
		case <-ctx.Done():
			l.noteUnsure(r, pending)
			l.propMu.Lock()
			out = r.Outcome()
			l.propMu.Unlock()
			l.log.V(3).Info("Round ended without a quorum", "ballot", r.Ballot().String(), "answered", answered, "heard", heard, "phase", pending[0].Kind.String())
			return out, refusals, ctx.Err()
		case <-l.stop:
			l.noteUnsure(r, pending)
			l.propMu.Lock()
			out = r.Outcome()
			l.propMu.Unlock()
			return out, refusals, errors.New("lock closed")
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
			next, herr := r.Handle(m)
			out = r.Outcome()
			l.propMu.Unlock()
			if herr != nil {
				l.log.V(2).Info("Dropped a reply", "from", e.From, "err", herr)
				continue
			}
			l.log.V(4).Info("Reply", "ballot", r.Ballot().String(), "from", m.From, "kind", m.Kind.String(), "reason", m.Reason.String(), "seen", m.Seen.String(), "status", out.Status.String())
			answered[m.From], heard[m.From] = true, true
			if len(next) > 0 {
				pending, answered = next, map[string]bool{}
				for _, m := range pending {
					l.tr.sendMsg(id, m)
				}
			}
			switch out.Status {
			case casp.Failed:
				if out.Wrote {
					l.addUnsure(out.Ballot)
				}
				if seen != nil && len(heard) < asked {
					continue
				}
				return out, refusals, nil
			case casp.Chosen:
				return out, refusals, nil
			}
		case <-tick.C:
			l.propMu.Lock()
			refused := !r.SkipsPrepare()
			stalled := r.Stalled() && seen == nil
			var was casp.Outcome
			if stalled {
				// A round that skipped its prepare phase sent its
				// accepts only to the voters that promised: one of them
				// is down or cut off. A round that a voter refused
				// (it promised a higher ballot, or this one without
				// telling this round) waits for one that does not
				// answer. Either way a full round above every ballot
				// seen, to every voter, replaces it (the write, if it
				// went out, is unsure); see casp.Round.Stalled.
				r.Abandon()
				was = r.Outcome()
				r = start(nowMillis())
				pending = r.Prepares()
			}
			l.propMu.Unlock()
			if stalled {
				if was.Wrote {
					l.addUnsure(was.Ballot)
				}
				l.log.V(3).Info("Round stalled; running a full one above it", "ballot", was.Ballot.String(), "skippedPrepare", !refused, "next", r.Ballot().String())
				answered, asked = map[string]bool{}, len(pending)
				for _, m := range pending {
					l.tr.sendMsg(id, m)
				}
				tick.Reset(every)
				continue
			}
			for _, m := range pending {
				if !answered[m.To] {
					l.tr.sendMsg(id, m)
				}
			}
			every = min(2*every, 4*l.resend)
			tick.Reset(every)
		}
	}
}

// noteUnsure remembers the round's write if accepts carrying it went out.
func (l *Lock) noteUnsure(r *casp.Round, sent []casp.Message) {
	for _, m := range sent {
		if m.Kind == casp.KindAccept && m.Value.Written == r.Ballot() {
			l.addUnsure(r.Ballot())
			return
		}
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

// handle answers a request as this node's acceptor, or takes a push.
func (l *Lock) handle(e *envelope) *envelope {
	switch e.Kind {
	case kindPush:
		if f := l.pushed.Load(); f != nil {
			(*f)(e)
		}
		var v casp.Value
		if err := json.Unmarshal(e.Payload, &v); err == nil {
			took := micros(e.Took)
			l.noteTook(took)
			// Pushed once chosen, so it began at least took before now.
			l.bound(v.Written, time.Now().Add(-took))
			l.propMu.Lock()
			if e.Gift != nil && l.prop.Adopt(*e.Gift) {
				// Before learn wakes the elector: its take-over
				// round spends the hand-over.
				l.log.V(4).Info("Adopted the release's prepare phase", "ballot", e.Gift.Ballot.String(), "from", e.From)
			}
			// The voters promised the push's ballot: this candidate's
			// next round starts above it instead of being refused.
			l.prop.Observe(v.Written)
			l.propMu.Unlock()
			l.learn(v, false, false)
		}
		return nil
	case kindPrepare, kindAccept, kindQuery:
	default:
		return nil
	}
	if l.acc == nil {
		return nil // not a voter
	}
	if !l.sole() {
		return nil // held (see guard)
	}
	var m casp.Message
	if err := json.Unmarshal(e.Payload, &m); err != nil {
		return nil
	}
	m.From = e.From
	l.accMu.Lock()
	r, err := l.acc.Handle(nowMillis(), m)
	if l.log.V(4).Enabled() {
		st := l.acc.State()
		rk := "none"
		if r != nil {
			rk = r.Kind.String() + "/" + r.Reason.String()
		}
		l.log.V(4).Info("Acceptor", "from", e.From, "kind", m.Kind.String(), "ballot", m.Ballot.String(), "inc", m.Incarnation, "promised", st.Promised.String(), "reply", rk, "err", err)
	}
	var age time.Duration
	if st := l.acc.State(); st.Value.Written != l.accWritten {
		// Accepted a new write now (or adopted it recovering): the write
		// began no later than this.
		l.accWritten, l.accSince = st.Value.Written, time.Now()
	}
	if r != nil && (r.Kind == casp.KindPromise || r.Kind == casp.KindReport) &&
		!r.Value.IsEmpty() && r.Value.Written == l.accWritten && !l.accSince.IsZero() {
		age = time.Since(l.accSince)
	}
	l.accMu.Unlock()
	if err != nil {
		if errors.Is(err, casp.ErrVoterHash) {
			l.m.refused.WithLabelValues("voters").Inc()
		}
		l.log.Error(err, "Could not answer", "from", e.From, "kind", e.Kind)
		return nil
	}
	if r == nil {
		return nil
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return nil
	}
	if f := l.replied.Load(); f != nil {
		defer (*f)(kindOf(r.Kind), e.From)
	}
	return &envelope{Kind: kindOf(r.Kind), Ballot: r.Ballot, Age: age.Microseconds(), Payload: payload}
}

// WaitMembers waits until memberlist sees at least n candidates
// (identities) alive, this one included, or ctx ends.
func (l *Lock) WaitMembers(ctx context.Context, n int) error {
	if err := l.tr.waitMembers(ctx, n); err != nil {
		return fmt.Errorf("%s: %w", l.desc, err)
	}
	return nil
}
