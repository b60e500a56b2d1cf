package shard

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/go-logr/logr"

	core "github.com/b3df926d/leaderelection/internal/shard"
	"github.com/b3df926d/leaderelection/lock"
)

// glue drives one replica: it reads the records into a core.View, feeds
// it to the member's core.Replica, and carries out its actions; it also
// does what the core leaves to the glue: joining a free slot, evicting
// an expired one, writing a deleted one back. One goroutine (run) does
// all of it, so each record's watching handle is read and written from
// one place and a write's compare-and-swap is from the view just read.
type glue struct {
	opt Options
	m   int
	fn  func(context.Context, int)
	log logr.Logger

	slots  []*record
	assign *record
	view   core.View // Slots[k].ReadAt > 0 only for reads through fresh handles
	known  int64     // the highest generation seen: records, acks, memory
	reads  uint64    // fresh reads issued (core.View.Now)
	// assignedAt is reads when the view's assignment last changed: a
	// slot read fresh after it (Slot.ReadAt above it) is at least as new.
	assignedAt uint64

	mu       sync.Mutex
	dirty    []bool // per record (slots, then the assignment): signalled
	unwached []bool // per record: its watch ended, poll it
	changed  chan struct{}
	watchers sync.WaitGroup

	returned chan int
	work     map[int]*job // the shards started and not yet returned after a Stop

	// For Options.Ownership and Options.Metrics: shards started and
	// stopped, and the newest generation read and when.
	starts, stops int64
	seenGen       int64
	seenAt        time.Time
}

// job is one shard's function, started.
type job struct {
	term    int64
	cancel  context.CancelFunc
	stopped bool // the replica stopped it
	done    bool // it has returned
}

// record is what the glue keeps of one record.
type record struct {
	name  string
	watch lock.Interface // subscribed to Changes; Get may answer from a cache
	fresh lock.Interface // Get reads the store (slots only)
	// raw is the record last read, seen (on this process's clock) when
	// it last changed; missing since when it was last read as deleted.
	raw     []byte
	seen    time.Time
	lease   time.Duration
	missing time.Time
	// notBefore delays the next eviction or write-back after one failed.
	notBefore time.Time
	badLogs   int
}

func newGlue(ctx context.Context, opt Options, m int, fn func(context.Context, int)) (*glue, error) {
	g := &glue{opt: opt, m: m, fn: fn, returned: make(chan int, m), work: map[int]*job{},
		changed: make(chan struct{}, 1), dirty: make([]bool, opt.Slots+1), unwached: make([]bool, opt.Slots+1)}
	g.log = opt.Logger.WithValues("shards", opt.Name, "identity", opt.Identity)
	g.view.Slots = make([]core.Slot, opt.Slots)
	for k := range opt.Slots {
		r, err := g.newRecord(slotName(opt.Name, k), true)
		if err != nil {
			return nil, err
		}
		g.slots = append(g.slots, r)
	}
	r, err := g.newRecord(assignmentName(opt.Name), false)
	if err != nil {
		return nil, err
	}
	g.assign = r
	return g, nil
}

func (g *glue) newRecord(name string, fresh bool) (*record, error) {
	r := &record{name: name}
	var err error
	if r.watch, err = g.opt.Locks(name, false); err != nil {
		return nil, fmt.Errorf("shard %s: Options.Locks(%q): %w", g.opt.Name, name, err)
	}
	if fresh {
		if r.fresh, err = g.opt.Locks(name, true); err != nil {
			return nil, fmt.Errorf("shard %s: Options.Locks(%q): %w", g.opt.Name, name, err)
		}
	}
	return r, nil
}

// records lists every record: the slots, then the assignment.
func (g *glue) records() []*record { return append(g.slots[:len(g.slots):len(g.slots)], g.assign) }

// subscribe watches every record that can be watched until ctx ends.
func (g *glue) subscribe(ctx context.Context) {
	for i, r := range g.records() {
		w, ok := r.watch.(lock.Watcher)
		if !ok {
			g.unwached[i] = true
			continue
		}
		ch := w.Changes(ctx)
		g.watchers.Add(1)
		go func() {
			defer g.watchers.Done()
			for range ch {
				g.mark(i)
			}
			g.mu.Lock()
			g.unwached[i] = true // ended for good (or ctx ended): poll
			g.mu.Unlock()
		}()
	}
}

func (g *glue) mark(i int) {
	g.mu.Lock()
	g.dirty[i] = true
	g.mu.Unlock()
	select {
	case g.changed <- struct{}{}:
	default:
	}
}

// polling reports whether some record cannot be watched now.
func (g *glue) polling() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, r := range g.records() {
		if g.unwached[i] {
			return true
		}
		if ws, ok := r.watch.(lock.WatchState); ok && !ws.Watching() {
			return true
		}
	}
	return false
}

// takeDirty returns the records signalled since the last call.
func (g *glue) takeDirty(all bool) []bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]bool, len(g.dirty))
	for i := range g.dirty {
		out[i], g.dirty[i] = g.dirty[i] || all, false
	}
	return out
}

// read reads the records in which (slots by index, then the assignment)
// into the view. Slots are read through fresh handles when fresh is set;
// only those reads count for the barrier (Slot.ReadAt). It returns an
// error only for an assignment record that does not decode.
func (g *glue) read(ctx context.Context, which []bool, fresh bool) error {
	for k, r := range g.slots {
		if !which[k] {
			continue
		}
		h, readAt := r.watch, uint64(0)
		if fresh {
			g.reads++
			h, readAt = r.fresh, g.reads
		}
		rec, raw, err := g.get(ctx, h)
		switch {
		case errors.Is(err, lock.ErrNeverWritten):
			g.view.Slots[k] = core.Slot{State: core.Free, ReadAt: readAt}
			r.observe(nil, nil)
		case lock.IsNotFound(err):
			if r.missing.IsZero() {
				r.missing = time.Now()
			}
			g.view.Slots[k] = core.Slot{State: core.Unknown, ReadAt: readAt}
			r.raw = nil
		case errors.Is(err, lock.ErrCorrupt):
			if r.badLogs++; r.badLogs == 1 {
				g.log.Error(err, "A slot record does not decode; it blocks every move until it is deleted", "record", r.watch.Describe())
			}
			g.view.Slots[k] = core.Slot{State: core.Unknown, ReadAt: readAt}
		case err != nil:
			// Read again at the next poll; meanwhile the view keeps the
			// last read, which counts for no barrier it did not already.
			g.log.V(2).Info("Reading a slot failed", "record", r.name, "err", err)
			g.view.Slots[k].ReadAt = 0
		default:
			s := decodeSlot(rec, k)
			s.ReadAt = readAt
			g.view.Slots[k] = s
			g.known = max(g.known, s.Ack.Generation)
			r.observe(rec, raw)
		}
	}
	if which[len(g.slots)] {
		rec, _, err := g.get(ctx, g.assign.watch)
		switch {
		case lock.IsNotFound(err):
			g.view.Assignment = nil
		case err != nil:
			g.log.V(2).Info("Reading the assignment failed", "err", err)
		default:
			a, err := decodeAssignment(rec)
			if err != nil {
				return fmt.Errorf("shard %s: the assignment record %s does not decode (delete it to let the replicas write it anew): %w", g.opt.Name, g.assign.watch.Describe(), err)
			}
			if g.view.Assignment == nil || g.view.Assignment.Ack() != a.Ack() {
				g.assignedAt = g.reads
			}
			g.view.Assignment = a
			g.known = max(g.known, a.Generation)
			if a.Generation > g.seenGen {
				g.seenGen, g.seenAt = a.Generation, time.Now()
			}
		}
	}
	g.view.Now = g.reads
	return nil
}

func (g *glue) get(ctx context.Context, l lock.Interface) (*lock.Record, []byte, error) {
	g.beat(g.opt.RenewDeadline)
	actx, cancel := context.WithTimeout(ctx, g.opt.RenewDeadline)
	defer cancel()
	rec, raw, err := l.Get(actx)
	g.opt.Ownership.storeResult(err)
	return rec, raw, err
}

// observe stamps a slot record when its bytes change, on this process's
// clock, as the elector does: its lease runs from then.
func (r *record) observe(rec *lock.Record, raw []byte) {
	r.missing = time.Time{}
	if rec == nil || !bytes.Equal(raw, r.raw) {
		r.raw, r.seen = raw, time.Now()
	}
	if rec != nil {
		r.lease = time.Duration(rec.LeaseDurationSeconds) * time.Second
	}
}

// expiry is when slot k may be evicted (a held slot not this replica's,
// unchanged for its lease) or written back (missing for LeaseDuration);
// zero if neither applies.
func (g *glue) expiry(k int, self *core.Member) time.Time {
	s, r := g.view.Slots[k], g.slots[k]
	var at time.Time
	switch {
	case self != nil && k == self.Slot:
		return time.Time{} // its own renewals decide
	case s.State == core.Held && r.raw != nil:
		at = r.seen.Add(max(r.lease, g.opt.LeaseDuration))
	case s.State == core.Unknown && !r.missing.IsZero():
		at = r.missing.Add(g.opt.LeaseDuration)
	default:
		return time.Time{}
	}
	if at.Before(r.notBefore) {
		return r.notBefore
	}
	return at
}

// housekeep evicts every held slot whose lease has expired (a
// compare-and-swap from the version seen unchanged, to Free keeping its
// generation), and writes back free every slot missing for
// LeaseDuration, with the highest generation known (docs/shards.md,
// steps 6 and 7). It returns the next such instant (zero: none).
func (g *glue) housekeep(ctx context.Context, self *core.Member) time.Time {
	var next time.Time
	now := time.Now()
	for k, r := range g.slots {
		at := g.expiry(k, self)
		if at.IsZero() {
			continue
		}
		if at.After(now) {
			if next.IsZero() || at.Before(next) {
				next = at
			}
			continue
		}
		g.beat(g.opt.RenewDeadline)
		actx, cancel := context.WithTimeout(ctx, g.opt.RenewDeadline)
		switch s := g.view.Slots[k]; s.State {
		case core.Held:
			// A fresh read, and a compare-and-swap from it: a renewal
			// that landed since the bytes last changed makes it fail.
			rec, raw, err := r.fresh.Get(actx)
			if err == nil && bytes.Equal(raw, r.raw) {
				err = r.fresh.Update(actx, freeRecord(int64(rec.LeaderTransitions), time.Now()))
				if err == nil {
					g.log.Info("Evicted a slot whose lease expired", "slot", k, "holder", s.Member.ID, "unchangedFor", time.Since(r.seen).Round(time.Millisecond))
				}
			}
			if err != nil {
				g.log.V(2).Info("Evicting a slot failed", "slot", k, "err", err)
				r.notBefore = time.Now().Add(g.opt.RetryPeriod)
			}
		case core.Unknown:
			err := r.fresh.Create(actx, freeRecord(g.known, time.Now()))
			if err == nil {
				g.log.Info("Wrote back a deleted slot", "slot", k, "generation", g.known)
			} else {
				g.log.V(2).Info("Writing back a deleted slot failed", "slot", k, "err", err)
				r.notBefore = time.Now().Add(g.opt.RetryPeriod)
			}
		}
		cancel()
		g.mark(k)
	}
	return next
}

// waitFor is what the loop waits for besides the view changing.
type waitFor struct {
	lost    <-chan struct{}
	timeout time.Time // a retry or an expiry
}

// wait blocks until a record is signalled, a shard's function returns,
// w's events, ctx ends or the next poll is due; it returns the shard
// whose function returned (or -1) and whether every record should be
// read (a poll, a safety read, or a retry after a failure).
func (g *glue) wait(ctx context.Context, w waitFor) (returned int, all bool) {
	interval := g.opt.LeaseDuration // safety read
	if g.polling() {
		interval = g.opt.RetryPeriod + rand.N(g.opt.RetryPeriod/5+1)
	}
	at := time.Now().Add(interval)
	if !w.timeout.IsZero() && w.timeout.Before(at) {
		at = w.timeout
	}
	g.beat(time.Until(at) + g.opt.RenewDeadline)
	timer := time.NewTimer(time.Until(at))
	defer timer.Stop()
	select {
	case <-g.changed:
		return -1, false
	case s := <-g.returned:
		return s, false
	case <-w.lost:
		return -1, false
	case <-ctx.Done():
		return -1, false
	case <-timer.C:
		return -1, true
	}
}

// run is Run's loop: join a free slot, serve as a member until the slot
// is lost (then join again) or ctx ends (then leave).
func (g *glue) run(ctx context.Context) error {
	life, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer func() {
		stop()
		g.watchers.Wait()
	}()
	g.subscribe(life)
	defer g.report(nil, 0)
	defer g.beat(0)
	all := true
	for {
		if err := g.read(life, g.takeDirty(all), false); err != nil {
			return err
		}
		if a := g.view.Assignment; a != nil && len(a.Owners) != g.m {
			return fmt.Errorf("shard %s: %w: %d shards in the assignment record (generation %d), %d here; stop every replica to change the shard count", g.opt.Name, ErrShardCount, len(a.Owners), a.Generation, g.m)
		}
		next := g.housekeep(life, nil)
		if ctx.Err() != nil {
			return nil
		}
		t := g.join(ctx)
		if t == nil {
			retry := next
			if retry.IsZero() || time.Until(retry) > g.opt.RetryPeriod {
				retry = time.Now().Add(g.opt.RetryPeriod)
			}
			g.report(nil, 0)
			_, all = g.wait(ctx, waitFor{timeout: retry})
			continue
		}
		left, err := g.serve(ctx, life, t)
		if left || err != nil {
			return err
		}
		all = true
	}
}

// join tries the free slots in an order that spreads replicas that start
// together; nil if none could be taken.
func (g *glue) join(ctx context.Context) *tenure {
	n := len(g.slots)
	h := fnv.New32a()
	h.Write([]byte(g.opt.Identity))
	first := int(h.Sum32() % uint32(n))
	for i := range n {
		k := (first + i) % n
		if g.view.Slots[k].State != core.Free {
			continue
		}
		g.beat(g.opt.RenewDeadline)
		t, err := take(ctx, g.opt, g.log, k, g.known)
		if err == nil {
			return t
		}
		g.log.V(2).Info("Taking a free slot failed", "slot", k, "err", err)
	}
	return nil
}

// serve runs the member's protocol until its slot is lost (left=false:
// join again) or ctx ends and it has left (left=true). Every shard's
// function has returned when it returns, except after ErrStopTimeout.
func (g *glue) serve(ctx, life context.Context, t *tenure) (left bool, err error) {
	g.known = max(g.known, t.ack.Generation) // the slot's own, read fresh when taken
	rep := core.NewReplica(t.self, g.m, g.known)
	self := t.self
	all, refreshed := true, false // refreshed: the reads after the last ack are done
	for {
		if t.isLost() {
			g.beat(g.opt.StopTimeout + g.opt.RenewDeadline) // the functions, then the last renewal
			g.drain()
			// /status stops listing the shards before the slot can be
			// written back free and others start them.
			g.report(nil, 0)
			t.end()
			g.beat(g.opt.LeaseDuration)
			t.putBack(life, g.known)
			return ctx.Err() != nil, nil
		}
		if ctx.Err() != nil {
			return true, g.leave(life, t, rep)
		}
		a := g.view.Assignment
		pending := a != nil && rep.Acked() == a.Ack() && !g.runsAll(a, self)
		durable := t.durable()
		fresh := durable && pending
		which := g.takeDirty(all)
		if durable && !refreshed {
			which, fresh, refreshed = g.takeDirty(true), true, true
		}
		if err := g.read(life, which, fresh); err != nil {
			return true, errors.Join(err, g.leave(life, t, rep))
		}
		g.confirm(life)
		acts, err := rep.Observe(g.view)
		if err != nil {
			err = fmt.Errorf("shard %s: %w: stop every replica to change the shard count", g.opt.Name, err)
			return true, errors.Join(err, g.leave(life, t, rep))
		}
		retry := false
		for _, act := range acts {
			switch act := act.(type) {
			case core.WriteAck:
				refreshed = false
				g.beat(2 * g.opt.RenewDeadline) // behind a renewal, then its own
				if err := t.acknowledge(act.Ack); err != nil {
					g.log.V(2).Info("Writing the acknowledgement failed", "err", err)
					retry = true
				}
			case core.WriteAssignment:
				if err := g.writeAssignment(life, act.Assignment); err != nil {
					retry = true
				}
			default:
				g.act(t, rep, act)
			}
		}
		if !t.durable() && !t.isLost() {
			g.beat(2 * g.opt.RenewDeadline)
			if err := t.write(); err != nil {
				retry = true
			}
		}
		next := g.housekeep(life, &self)
		if retry && (next.IsZero() || time.Until(next) > g.opt.RetryPeriod) {
			next = time.Now().Add(g.opt.RetryPeriod)
		}
		if t.durable() && !refreshed {
			all = false
			continue // the reads after the acknowledgement, at once
		}
		g.report(&self, rep.Acked().Generation)
		var s int
		s, all = g.wait(ctx, waitFor{lost: t.lost, timeout: next})
		if s >= 0 {
			g.returnedShard(t, rep, s)
		}
	}
}

// confirm reads through its fresh handle every slot whose view disagrees
// with the assignment's member list (held by a member it does not list,
// or not held by the member it lists) and was not read fresh since the
// assignment changed: the
// replica proposes a new member list from such a disagreement, and each
// record's watch delivers on its own, so a slot's view may be older than
// the assignment's (a member that saw the assignment adding a joiner
// before the joiner's slot would write it back without the joiner, which
// proposes itself again, and so on until its watch caught up). A fresh
// read is issued after the assignment was read, so what it shows is at
// least as new. It costs a read per disagreeing slot, only while
// membership changes.
func (g *glue) confirm(ctx context.Context) {
	a := g.view.Assignment
	if a == nil {
		return
	}
	which := make([]bool, len(g.slots)+1)
	stale := false
	for k, s := range g.view.Slots {
		i := slices.IndexFunc(a.Members, func(m core.Member) bool { return m.Slot == k })
		agrees := s.State != core.Held && i < 0 || s.State == core.Held && i >= 0 && s.Member == a.Members[i]
		if !agrees && s.ReadAt <= g.assignedAt {
			which[k], stale = true, true
		}
	}
	if stale {
		g.read(ctx, which, true) //nolint:errcheck // only an assignment read fails
	}
}

// runsAll reports whether this member runs every shard a gives it.
func (g *glue) runsAll(a *core.Assignment, self core.Member) bool {
	for _, s := range a.Shards(self) {
		if _, ok := g.work[s]; !ok {
			return false
		}
	}
	return true
}

// act carries out Start and Stop. Stopping a shard whose function had
// returned by itself completes the stop at once: it returns what the
// replica does next (a Release, if it is leaving and that was the last).
func (g *glue) act(t *tenure, rep *core.Replica, act core.Action) []core.Action {
	switch act := act.(type) {
	case core.Start:
		if t.isLost() {
			return nil // the step-down has cancelled everything
		}
		ctx, cancel := context.WithCancel(context.WithValue(t.ctx, termKey{}, act.Term))
		g.work[act.Shard] = &job{term: act.Term, cancel: cancel}
		g.started(act.Term)
		g.log.V(1).Info("Started a shard", "shard", act.Shard, "term", act.Term)
		go func() {
			defer func() { g.returned <- act.Shard }()
			g.fn(ctx, act.Shard)
		}()
	case core.Stop:
		if j, ok := g.work[act.Shard]; ok {
			j.stopped = true
			j.cancel()
			if j.done {
				return g.returnedShard(t, rep, act.Shard) // it had returned by itself
			}
		}
	}
	return nil
}

// returnedShard records that shard s's function returned. After its
// Stop, the replica learns it (and may release or acknowledge); a
// function that returned by itself stays counted as running until the
// replica stops it, so it is not started again under the same term.
func (g *glue) returnedShard(t *tenure, rep *core.Replica, s int) []core.Action {
	j, ok := g.work[s]
	if !ok {
		return nil
	}
	j.done = true
	j.cancel()
	if !j.stopped {
		g.log.Info("A shard's function returned while the shard is still this replica's; it stays idle here until it moves", "shard", s)
		return nil
	}
	delete(g.work, s)
	g.stops++
	g.log.V(1).Info("Stopped a shard", "shard", s)
	acts := rep.Returned(s)
	for _, a := range acts {
		g.act(t, rep, a)
	}
	return acts
}

// drain waits for every shard's function to return (their contexts are
// cancelled).
func (g *glue) drain() {
	for s, j := range g.work {
		if j.done {
			delete(g.work, s)
			g.stops++
		}
	}
	for len(g.work) > 0 {
		s := <-g.returned
		delete(g.work, s)
		g.stops++
	}
}

// leave stops every shard, waits up to StopTimeout for the functions,
// and releases the slot; the renewals go on meanwhile, so nobody starts
// the shards before their functions have returned.
func (g *glue) leave(ctx context.Context, t *tenure, rep *core.Replica) error {
	var acts []core.Action
	for _, a := range rep.Leave() {
		acts = append(append(acts, a), g.act(t, rep, a)...)
	}
	g.beat(g.opt.StopTimeout + 3*g.opt.RenewDeadline) // the functions, the last renewal, the release
	timeout := time.NewTimer(g.opt.StopTimeout)
	defer timeout.Stop()
	for {
		for _, a := range acts {
			if r, ok := a.(core.Release); ok {
				t.release(ctx, max(r.Known, g.known))
				return nil
			}
		}
		if len(g.work) == 0 && t.isLost() {
			t.end()
			return nil
		}
		select {
		case s := <-g.returned:
			acts = g.returnedShard(t, rep, s)
		case <-timeout.C:
			t.end()
			return fmt.Errorf("shard %s: %w: %d still running after %v", g.opt.Name, ErrStopTimeout, len(g.work), g.opt.StopTimeout)
		}
	}
}

// writeAssignment writes a by compare-and-swap from the version of the
// assignment record in the view just read (a create if it had none).
func (g *glue) writeAssignment(ctx context.Context, a core.Assignment) error {
	rec, err := assignmentRecord(a, time.Now())
	if err != nil {
		return fmt.Errorf("shard %s: %w", g.opt.Name, err)
	}
	g.beat(g.opt.RenewDeadline)
	actx, cancel := context.WithTimeout(ctx, g.opt.RenewDeadline)
	defer cancel()
	if g.view.Assignment == nil {
		err = g.assign.watch.Create(actx, rec)
	} else {
		err = g.assign.watch.Update(actx, rec)
	}
	g.mark(len(g.slots))
	if err != nil {
		g.log.V(2).Info("Writing the assignment failed", "generation", a.Generation, "err", err)
		if lock.IsConflict(err) || lock.IsNotFound(err) {
			return nil // a lost race: the next view shows the winner's
		}
		return err
	}
	g.log.Info("Wrote the assignment", "generation", a.Generation, "members", len(a.Members))
	return nil
}
