package shard

import (
	"slices"
	"sync"
	"time"

	"github.com/b3df926d/leaderelection/healthz"
	core "github.com/b3df926d/leaderelection/internal/shard"
	"github.com/b3df926d/leaderelection/lock"
)

// Ownership is a replica's part in its shard set, kept up to date by Run:
// set Options.Ownership to one, and read it from handlers and goroutines.
// It is a healthz.Source, so a health server serves it: /status shows the
// shards this replica runs with their terms, the members and the
// assignment's generation (healthz.Status.Shards), and /metrics the shard
// metrics (healthz.Metrics), and the watchdog on /livez fails when Run's
// loop is past due (Status().HeartbeatDue: a store call that ignores its
// deadline, or a shard function that does not return within StopTimeout
// of its context ending). The zero value reports no slot and no shard
// until Run starts, and no name: a health server labels its metrics with
// the name its source reports when it is built, so build one by hand only
// once Run has started, or let RunOrDie build it.
type Ownership struct {
	mu        sync.Mutex
	st        healthz.Status
	beat, due time.Time
	// The last store call's failure (nil: it succeeded), since when the
	// calls fail, and how many failed: /readyz's store check.
	storeErr      error
	storeErrSince time.Time
	storeErrors   int64
}

// Status returns a copy of this replica's state: Leading while it runs a
// shard, and Shards always set (Slot -1 while it holds no slot).
func (o *Ownership) Status() healthz.Status {
	o.mu.Lock()
	defer o.mu.Unlock()
	st := o.st
	sh := healthz.Shards{Slot: -1}
	if st.Shards != nil {
		sh = *st.Shards
		sh.Owned = slices.Clone(sh.Owned)
		sh.Members = slices.Clone(sh.Members)
	}
	st.Shards = &sh
	st.Heartbeat, st.HeartbeatDue = o.beat, o.due
	if o.storeErr != nil {
		st.StoreError, st.StoreErrorSince = o.storeErr.Error(), o.storeErrSince
	}
	st.StoreErrors = o.storeErrors
	return st
}

// storeResult records the outcome of a store call, as the elector does:
// a missing record or a lost compare-and-swap is an answer, anything
// else (a timeout, a corrupt record) a failure. Any goroutine may call it.
func (o *Ownership) storeResult(err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err == nil || lock.IsNotFound(err) || lock.IsConflict(err) {
		o.storeErr, o.storeErrSince = nil, time.Time{}
		return
	}
	if o.storeErr == nil {
		o.storeErrSince = time.Now()
	}
	o.storeErr = err
	o.storeErrors++
}

// beatFor records that Run's loop came round now and must come round
// again within d (zero d: it is not running).
func (o *Ownership) beatFor(d time.Duration) {
	var beat, due time.Time
	if d > 0 {
		beat = time.Now()
		due = beat.Add(d)
	}
	o.mu.Lock()
	o.beat, o.due = beat, due
	o.mu.Unlock()
}

// beat is the loop's heartbeat: before each step whose duration is
// bounded, by that bound (a store call: RenewDeadline; waiting for the
// shards' functions: StopTimeout), so that only a step past its own
// bound makes the loop past due.
func (g *glue) beat(d time.Duration) { g.opt.Ownership.beatFor(d) }

func (o *Ownership) set(st healthz.Status) {
	o.mu.Lock()
	o.st = st
	o.mu.Unlock()
}

// report publishes the replica's state: self is its member (nil while it
// holds no slot), acked the generation it acknowledged.
func (g *glue) report(self *core.Member, acked int64) {
	sh := &healthz.Shards{Count: g.m, Slot: -1, Acked: acked, Starts: g.starts, Stops: g.stops, Owned: []healthz.OwnedShard{}, Members: []healthz.ShardMember{}}
	if self != nil {
		sh.Slot = self.Slot
	}
	for s, j := range g.work {
		if !j.stopped && !j.done {
			sh.Owned = append(sh.Owned, healthz.OwnedShard{Shard: s, Term: j.term})
		}
	}
	slices.SortFunc(sh.Owned, func(a, b healthz.OwnedShard) int { return a.Shard - b.Shard })
	if a := g.view.Assignment; a != nil {
		sh.Generation = a.Generation
		for _, m := range a.Members {
			shards := a.Shards(m)
			if shards == nil {
				shards = []int{}
			}
			sh.Members = append(sh.Members, healthz.ShardMember{Slot: m.Slot, Identity: m.ID, Shards: shards})
		}
	}
	g.opt.Ownership.set(healthz.Status{Name: g.opt.Name, Identity: g.opt.Identity, Lock: g.assign.watch.Describe(),
		Leading: len(sh.Owned) > 0, LeaseDuration: g.opt.LeaseDuration, Shards: sh})
}

// started counts a shard started under term, and observes its move: the
// time since this replica read the assignment that gave it the shard.
func (g *glue) started(term int64) {
	g.starts++
	if g.opt.Metrics != nil && term == g.seenGen {
		g.opt.Metrics.ObserveMove(g.opt.Name, time.Since(g.seenAt))
	}
}
