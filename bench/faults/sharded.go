package main

// The sharded mode (Config.Shards > 0): the replicas run the example with
// --shards=M (package shard), and every shard writes through a fencing
// sink of its own (the sink path plus ".<shard>"). The campaign watches
// who runs which shard, counts moves (a shard's owner changing) and
// checks, per shard, what the single-leader campaign checks per term:
// never two live replicas at once, never a term reused or going
// backwards (docs/reliability.md, "Sharded").

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/b3df926d/leaderelection/internal/fence"
	"github.com/b3df926d/leaderelection/shard"
)

// exampleSlots is the example's shard.Options.Slots: the package default.
const exampleSlots = 16

// shardRecords are the example's records in the sharded mode, as suffixes
// of the lock's name: the assignment and every slot.
func shardRecords() []string {
	out := []string{shard.AssignmentSuffix}
	for k := range exampleSlots {
		out = append(out, shard.SlotSuffix(k))
	}
	return out
}

// pauseSpan is one SIGSTOP..SIGCONT of a replica; to is zero while it lasts.
type pauseSpan struct{ from, to time.Time }

// pausedDuring reports whether id was paused at some moment of [from, to].
func (c *campaign) pausedDuring(id string, from, to time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, p := range c.pauses[id] {
		if !p.from.After(to) && (p.to.IsZero() || !p.to.Before(from)) {
			return true
		}
	}
	return false
}

// shardSink is shard s's fencing sink.
func (c *campaign) shardSink(s int) string { return c.sinkPath + "." + strconv.Itoa(s) }

// shardTenure is one (identity, term) seen running a shard, from the
// first /status that listed it.
type shardTenure struct {
	id    string
	term  int64
	first time.Time
}

// shardRound is what one complete round of /status saw: every running
// replica answered and none was paused.
type shardRound struct {
	at    time.Time
	owner []string // per shard: the replica that runs it ("" none, or the first of several)
	term  []int64
	count map[string]int // shards per replica
	twice bool           // a shard listed by two replicas
}

// shardObserver polls every replica's /status and keeps, per shard, its
// tenures, moves and unowned stretches, and any moment two live, unpaused
// replicas both run one shard.
type shardObserver struct {
	c *campaign
	m int

	mu          sync.Mutex
	tenures     [][]shardTenure             // per shard, in the order first seen
	owners      []map[int64]map[string]bool // per shard: term → identities seen running it
	moves       int                         // tenures whose identity differs from the shard's previous one
	newTenures  int                         // tenures after each shard's first
	gapStart    []time.Time                 // per shard; zero while someone runs it
	longest     time.Duration
	overlaps    []string
	regressions []string
	stale       int // a replica paused in its tenure listed the shard while another ran it
	samples     int
	last        shardRound
}

func newShardObserver(c *campaign) *shardObserver {
	m := c.cfg.Shards
	o := &shardObserver{c: c, m: m, tenures: make([][]shardTenure, m), owners: make([]map[int64]map[string]bool, m), gapStart: make([]time.Time, m)}
	for s := range o.owners {
		o.owners[s] = map[int64]map[string]bool{}
	}
	return o
}

// holding is one replica listing a shard in one round.
type holding struct {
	r    *replica
	term int64
}

func (o *shardObserver) round(ctx context.Context) {
	now := time.Now()
	byShard := make([][]holding, o.m)
	complete := true
	count := map[string]int{}
	for _, r := range o.c.live() {
		if r.paused.Load() {
			complete = false
			continue
		}
		st, ok := r.status(ctx)
		if !ok || st.Shards == nil {
			complete = false
			continue
		}
		count[r.id] = len(st.Shards.Owned)
		for _, ow := range st.Shards.Owned {
			if ow.Shard < 0 || ow.Shard >= o.m {
				o.c.problem("%s lists shard %d of %d", r.id, ow.Shard, o.m)
				continue
			}
			byShard[ow.Shard] = append(byShard[ow.Shard], holding{r, ow.Term})
		}
	}
	// Two listed one shard: read the earlier ones again. If i still runs
	// it in the same term (a shard's tenure is one unbroken interval), it
	// ran it while j, read in between, ran it too.
	type pair struct {
		s    int
		a, b holding
	}
	var both []pair
	for s, hs := range byShard {
		for i := 0; i < len(hs)-1; i++ {
			if !o.stillRuns(ctx, hs[i], s) {
				continue
			}
			for _, j := range hs[i+1:] {
				both = append(both, pair{s, hs[i], j})
			}
		}
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	o.samples++
	for _, p := range both {
		if o.pausedInTenure(p.s, p.a, now) || o.pausedInTenure(p.s, p.b, now) {
			o.stale++
			continue
		}
		o.overlaps = append(o.overlaps, fmt.Sprintf("shard %d: %s (term %d) and %s (term %d) both ran it at %s",
			p.s, p.a.r.id, p.a.term, p.b.r.id, p.b.term, now.Format(time.RFC3339Nano)))
	}
	r := shardRound{at: now, owner: make([]string, o.m), term: make([]int64, o.m), count: count}
	for s, hs := range byShard {
		if len(hs) == 0 {
			if o.gapStart[s].IsZero() && len(o.tenures[s]) > 0 {
				o.gapStart[s] = now
			}
			continue
		}
		if !o.gapStart[s].IsZero() {
			o.longest = max(o.longest, now.Sub(o.gapStart[s]))
			o.gapStart[s] = time.Time{}
		}
		r.owner[s], r.term[s], r.twice = hs[0].r.id, hs[0].term, r.twice || len(hs) > 1
		for _, h := range hs {
			o.tenure(s, h, now)
		}
	}
	if complete {
		o.last = r
	}
}

// stillRuns reads h's replica again: does it still run shard s in h's term?
func (o *shardObserver) stillRuns(ctx context.Context, h holding, s int) bool {
	st, ok := h.r.status(ctx)
	if !ok || st.Shards == nil {
		return false
	}
	for _, ow := range st.Shards.Owned {
		if ow.Shard == s && ow.Term == h.term {
			return true
		}
	}
	return false
}

// pausedInTenure reports whether h's replica was paused since its tenure
// of shard s began (a stale report after it woke, not overlapping work).
// A tenure never seen before, below the shard's latest, began before
// that one (it was started just before a pause, and is listed after).
// o.mu is held.
func (o *shardObserver) pausedInTenure(s int, h holding, now time.Time) bool {
	first := now
	if t, ok := o.find(s, h.r.id, h.term); ok {
		first = t.first
	} else if ts := o.tenures[s]; len(ts) > 0 && ts[len(ts)-1].term > h.term {
		first = ts[len(ts)-1].first
	}
	return o.c.pausedDuring(h.r.id, first, now)
}

// find returns shard s's tenure (id, term), looking at the latest few.
// o.mu is held.
func (o *shardObserver) find(s int, id string, term int64) (shardTenure, bool) {
	ts := o.tenures[s]
	for i := len(ts) - 1; i >= 0 && i >= len(ts)-8; i-- {
		if ts[i].id == id && ts[i].term == term {
			return ts[i], true
		}
	}
	return shardTenure{}, false
}

// tenure records that h ran shard s at now: a new tenure, perhaps a move,
// and a term that must be above the shard's previous one. o.mu is held.
func (o *shardObserver) tenure(s int, h holding, now time.Time) {
	if o.owners[s][h.term] == nil {
		o.owners[s][h.term] = map[string]bool{}
	}
	o.owners[s][h.term][h.r.id] = true
	if _, ok := o.find(s, h.r.id, h.term); ok {
		return
	}
	ts := o.tenures[s]
	if len(ts) > 0 {
		prev := ts[len(ts)-1]
		switch {
		case h.term < prev.term && o.c.pausedDuring(h.r.id, prev.first, now):
			// A replica paused while the shard moved on lists its old
			// tenure once it wakes: stale, and not a new tenure.
			o.stale++
			return
		case h.term < prev.term:
			o.regressions = append(o.regressions, fmt.Sprintf("shard %d: term went from %d (%s) to %d (%s) at %s",
				s, prev.term, prev.id, h.term, h.r.id, now.Format(time.RFC3339Nano)))
		}
		// A term equal to the previous one by another identity is a term
		// held twice, counted from owners.
		o.newTenures++
		if prev.id != h.r.id {
			o.moves++
		}
	}
	o.tenures[s] = append(ts, shardTenure{id: h.r.id, term: h.term, first: now})
}

// counts returns the moves and new tenures so far, and the last complete
// round.
func (o *shardObserver) counts() (moves, tenures int, last shardRound) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.moves, o.newTenures, o.last
}

// shardsSettled reports whether the last complete round, taken after
// since, saw every shard run by exactly one of n replicas, each running
// ⌊M/n⌋ or ⌈M/n⌉, and every shard's sink written in its current term, with
// more writes accepted than base (per shard, read at since); else why not.
// The writes matter: a replica's /status may list shards its step-down
// timer has already stopped until its loop comes round (seen for 1.6 s on
// S3 under latency-high).
func (c *campaign) shardsSettled(since time.Time, base []int64) (bool, string) {
	_, _, r := c.sobs.counts()
	m, n := c.cfg.Shards, c.cfg.Replicas
	switch {
	case !r.at.After(since):
		return false, "no complete round of /status since the fault"
	case len(r.count) != n:
		return false, fmt.Sprintf("%d of %d replicas answered", len(r.count), n)
	case r.twice:
		return false, "a shard listed by two replicas"
	}
	for id, k := range r.count {
		if k < m/n || k > (m+n-1)/n {
			return false, fmt.Sprintf("%s runs %d shards (%v)", id, k, r.count)
		}
	}
	for s := range m {
		if r.owner[s] == "" {
			return false, fmt.Sprintf("shard %d not run", s)
		}
		if st, err := fence.Open(c.shardSink(s)).ReadState(); err != nil || st.Highest < r.term[s] || st.Accepted <= base[s] {
			return false, fmt.Sprintf("shard %d's sink not written in term %d since the fault", s, r.term[s])
		}
	}
	return true, ""
}

// settleShards restarts replicas that exited (recording unexpected exits),
// waits until every replica answers /livez, and until the shards are
// settled (shardsSettled) in a round after since, each worked since.
func (c *campaign) settleShards(since time.Time) error {
	base := make([]int64, c.cfg.Shards)
	for s := range base {
		st, err := fence.Open(c.shardSink(s)).ReadState()
		if err != nil {
			return err
		}
		base[s] = st.Accepted
	}
	for {
		if _, err := c.restartSlots(); err != nil {
			return err
		}
		deadline := time.Now().Add(settleTimeout)
		c.checkReplicas(deadline)
		for {
			ok, why := c.shardsSettled(since, base)
			if ok {
				return nil
			}
			if c.anyExited() {
				break // restart it, and wait again
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("shards not settled within %v of the last fault: %s; logs in %s", settleTimeout, why, c.dir)
			}
			time.Sleep(sampleEvery) // polling the observer's rounds and the sinks
		}
	}
}

// injectShard injects a fault in the sharded mode, waits until the shards
// are settled again, and records the time that took (from the fault's
// end: the signal, SIGCONT, the store's return) and the moves meanwhile.
// The replica faults act on a random replica that runs shards.
func (c *campaign) injectShard(kind string) error {
	moves0, tenures0, last := c.sobs.counts()
	var owners []*replica
	for _, r := range c.live() {
		if last.count[r.id] > 0 {
			owners = append(owners, r)
		}
	}
	if len(owners) == 0 {
		return fmt.Errorf("no replica runs a shard")
	}
	target := owners[c.rng.Intn(len(owners))]
	what := ""
	switch kind {
	case KillLeader, TermLeader:
		sig := map[string]syscall.Signal{KillLeader: syscall.SIGKILL, TermLeader: syscall.SIGTERM}[kind]
		target.signal(sig)
		select {
		case <-target.done:
		case <-time.After(settleTimeout):
			return fmt.Errorf("%s still running %v after %v (log %s)", target.id, settleTimeout, sig, target.log)
		}
		what = target.id
	case PauseLong, PauseShort:
		c.pause(target, kind)
		what = target.id
	case StoreRestart, LatencyHigh, LatencyLow, DropConns, StoreOutage:
		if err := c.storeFault(kind); err != nil {
			return err
		}
	case DeleteRecord:
		// The assignment, or the slot of the replica it falls on.
		what = shard.AssignmentSuffix
		if st, ok := target.status(context.Background()); ok && st.Shards != nil && st.Shards.Slot >= 0 && c.rng.Intn(2) == 0 {
			what = shard.SlotSuffix(st.Shards.Slot)
		}
		if err := c.store.deleteRecord(what); err != nil {
			return err
		}
		what = "record " + what
	default:
		return fmt.Errorf("unknown fault %q", kind)
	}
	end := time.Now()
	c.res.FaultsTotal++
	c.res.Faults[kind]++
	since := end
	if kind == DeleteRecord {
		// A slot's holder finds its record gone at its next renewal:
		// settled only counts from when it must have.
		since = end.Add(c.cfg.RetryPeriod + c.cfg.RenewDeadline)
	}
	if err := c.settleShards(since); err != nil {
		return err
	}
	d := time.Since(end)
	moves, tenures, _ := c.sobs.counts()
	c.res.Transitions = moves
	c.res.TransitionsBy[kind] += moves - moves0
	c.res.takeover(kind, d)
	c.cfg.Logf("fault %d: %s %s; %d moves, %d new shard terms, settled in %v", c.res.FaultsTotal, kind, what, moves-moves0, tenures-tenures0, d.Round(time.Millisecond))
	return nil
}

// finishShards completes the result from the observer and every shard's
// sink.
func (c *campaign) finishShards() {
	r, o := c.res, c.sobs
	o.mu.Lock()
	r.Transitions, r.ShardTenures = o.moves, o.newTenures
	r.Overlaps += len(o.overlaps)
	for _, v := range o.overlaps {
		r.violation("overlap: %s", v)
	}
	r.TermRegressions += len(o.regressions)
	for _, v := range o.regressions {
		r.violation("%s", v)
	}
	r.StaleLeaderReports = o.stale
	r.LongestGapMS = o.longest.Milliseconds()
	r.Samples = o.samples
	owners := o.owners
	o.mu.Unlock()

	for s := range c.cfg.Shards {
		// A write the sink fenced is excused if its writer was paused
		// since its tenure's first accepted write (or at all before it,
		// if it had none).
		first := map[string]time.Time{}
		excused := func(e fence.Entry) bool {
			return c.pausedDuring(e.ID, first[e.ID+"@"+strconv.FormatInt(e.Term, 10)], e.At)
		}
		log, _ := fence.Open(c.shardSink(s)).ReadLog()
		for _, e := range log {
			k := e.ID + "@" + strconv.FormatInt(e.Term, 10)
			if _, ok := first[k]; !ok && e.Accepted {
				first[k] = e.At
			}
		}
		r.checkSink(c.shardSink(s), " of shard "+strconv.Itoa(s), owners[s], excused)
	}
}
