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
	// lastPush is this candidate's last write pushed (see repush).
	lastPush atomic.Pointer[ownPush]
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
	tr.cameAlive = l.repush
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

// WaitMembers waits until memberlist sees at least n candidates
// (identities) alive, this one included, or ctx ends.
func (l *Lock) WaitMembers(ctx context.Context, n int) error {
	if err := l.tr.waitMembers(ctx, n); err != nil {
		return fmt.Errorf("%s: %w", l.desc, err)
	}
	return nil
}
