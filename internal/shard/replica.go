package shard

import (
	"errors"
	"fmt"
	"slices"
)

// ErrShardCount: the assignment record was written for another shard
// count than this replica's. The replica refuses to take part rather than
// split shards two ways.
var ErrShardCount = errors.New("shard: the assignment record has another shard count")

// SlotState is what a replica knows of one membership slot's record.
type SlotState int

const (
	// Free: released by its holder after its shards stopped, evicted after
	// its holder's lease expired, or never written. Its holder works no
	// shard.
	Free SlotState = iota
	// Held by a member that may be working the shards of the generation
	// it acked.
	Held
	// Unknown: the record is missing and may have been deleted under a
	// live member; it blocks every acquisition until the glue has waited
	// out that member's lease and written the slot back as Free.
	Unknown
)

// Slot is one membership slot's record as a replica last read it.
type Slot struct {
	State SlotState
	// Member holds a Held slot.
	Member Member
	// Ack is the assignment the holder acknowledged last: it works no
	// shard that assignment does not give it. A Free slot keeps its last
	// holder's, so generations go on counting from it.
	Ack Ack
	// ReadAt is the glue's read counter (View.Now) when the read that
	// returned this record was issued.
	ReadAt uint64
}

// Ack names an assignment: its generation and digest. The digest matters
// after the assignment record was deleted: a replica that never saw
// generation g may write another generation g, and an acknowledgement of
// one must not count for the other.
type Ack struct {
	Generation int64
	Digest     uint64
}

// View is what a replica last read of the store: the assignment record
// (nil if missing) and every slot, each read at its own time.
type View struct {
	Assignment *Assignment
	Slots      []Slot
	// Now is the glue's read counter: it counts reads issued, so a
	// Slot.ReadAt above a Now seen earlier was read after that moment.
	Now uint64
}

// Action is what the replica's glue must do: one of Start, Stop, WriteAck,
// WriteAssignment, Release.
type Action interface{ isAction() }

// Start the shard's function with a new context carrying Term.
type Start struct {
	Shard int
	Term  int64
}

// Stop cancels the shard's context; the glue calls Replica.Returned once
// its function has returned.
type Stop struct{ Shard int }

// WriteAck writes the replica's slot with Ack (a renewal that carries it).
type WriteAck struct{ Ack Ack }

// WriteAssignment writes the assignment record by compare-and-swap from
// the version of it in the view just observed (Create if that view had
// none). A lost race is harmless: the next view shows the winner's. Every
// view that still calls for a write proposes it again, so the glue keeps
// only the newest proposal and drops one it has not sent yet.
type WriteAssignment struct{ Assignment Assignment }

// Refresh reads every slot anew: the barrier counts only reads issued
// after this replica's last acknowledgement (a watch may deliver one
// record's change before another's that happened earlier).
type Refresh struct{}

// Release writes the replica's slot Free with ack generation Known (the
// highest it has seen, so that the count goes on from it): every shard
// has stopped.
type Release struct{ Known int64 }

func (Start) isAction()           {}
func (Stop) isAction()            {}
func (WriteAck) isAction()        {}
func (WriteAssignment) isAction() {}
func (Release) isAction()         {}
func (Refresh) isAction()         {}

// replicaRules can switch off one of the protocol's rules; only the tests
// set them, to show that the simulation catches each rule's absence.
type replicaRules struct {
	// noBarrier acquires as soon as this replica acked, without waiting
	// for every other slot's ack.
	noBarrier bool
	// ackBeforeReturn acks a generation as soon as the shards it takes
	// away are cancelled, without waiting for their functions to return.
	ackBeforeReturn bool
	// countFromRecord knows only the record's generation, forgetting
	// higher ones seen in slots or before the record was deleted.
	countFromRecord bool
	// unknownIsFree treats a missing slot record as Free.
	unknownIsFree bool
	// staleBarrier counts slot reads issued before the acknowledgement.
	staleBarrier bool
}

// Replica is the protocol of one member, from taking its slot to losing
// or releasing it (docs/shards.md): pure, no store and no clock; the glue
// feeds it views and returned functions, and carries out its actions.
// A replica that loses its slot (its lease) stops everything and starts
// again as a new Replica.
type Replica struct {
	self    Member
	m       int
	known   int64  // the highest generation ever seen
	ack     Ack    // the assignment acknowledged last (decided)
	ackedAt uint64 // View.Now when it was decided
	last    Assignment
	running map[int]int64 // shard → term, while its function runs
	stops   map[int]bool  // cancelled, function not yet returned
	leaving bool
	weak    replicaRules
}

// NewReplica returns the protocol of member self, which just took its slot
// having seen generations up to known (the assignment record's and every
// slot's ack), for m shards.
func NewReplica(self Member, m int, known int64) *Replica {
	return &Replica{self: self, m: m, known: known, ack: Ack{Generation: known},
		running: map[int]int64{}, stops: map[int]bool{}}
}

// Running returns the shards whose functions run, with their terms.
func (r *Replica) Running() map[int]int64 {
	out := make(map[int]int64, len(r.running))
	for s, t := range r.running {
		out[s] = t
	}
	return out
}

// Acked returns the assignment this replica has acknowledged last.
func (r *Replica) Acked() Ack { return r.ack }

// Observe takes a new view and returns what to do.
func (r *Replica) Observe(v View) ([]Action, error) {
	a := v.Assignment
	if a != nil && len(a.Owners) != r.m {
		return nil, fmt.Errorf("%w: %d shards in generation %d, %d here", ErrShardCount, len(a.Owners), a.Generation, r.m)
	}
	for _, s := range v.Slots {
		r.known = max(r.known, s.Ack.Generation)
	}
	if a != nil {
		r.known = max(r.known, a.Generation)
		if a.Generation > r.last.Generation {
			r.last = *a
		}
	}
	if r.weak.countFromRecord {
		r.known = 0
		if a != nil {
			r.known = a.Generation
		}
	}
	var acts []Action
	if r.leaving {
		return acts, nil
	}
	mine := -1
	for k, s := range v.Slots {
		if s.State == Held && s.Member == r.self {
			mine = k
		}
	}
	if mine < 0 {
		return acts, nil // not a member yet in this view
	}
	if w, ok := r.propose(v); ok {
		acts = append(acts, WriteAssignment{w})
	}
	if r.outdated(a) {
		return acts, nil // act on the rewrite
	}
	if a.Generation > r.ack.Generation {
		keep := a.Shards(r.self)
		for s := range r.running {
			if !slices.Contains(keep, s) && !r.stops[s] {
				r.stops[s] = true
				acts = append(acts, Stop{s})
			}
		}
		if r.weak.ackBeforeReturn {
			for s := range r.stops {
				delete(r.running, s)
				delete(r.stops, s)
			}
		}
		if len(r.stops) > 0 {
			return acts, nil // ack once they have returned
		}
		r.ack, r.ackedAt = a.Ack(), v.Now
		acts = append(acts, WriteAck{r.ack}, Refresh{})
	}
	return append(acts, r.acquire(v)...), nil
}

// Returned reports that shard s's function returned after its Stop.
func (r *Replica) Returned(s int) []Action {
	delete(r.stops, s)
	delete(r.running, s)
	if len(r.stops) > 0 {
		return nil
	}
	if r.leaving {
		return []Action{Release{r.known}}
	}
	return nil // the next Observe acks
}

// Leave stops every shard; Release follows once all have returned.
func (r *Replica) Leave() []Action {
	r.leaving = true
	var acts []Action
	for s := range r.running {
		if !r.stops[s] {
			r.stops[s] = true
			acts = append(acts, Stop{s})
		}
	}
	if len(r.stops) == 0 {
		acts = append(acts, Release{r.known})
	}
	return acts
}

// acquire starts the shards of the current generation that this replica
// does not run yet, once every slot has acknowledged it.
func (r *Replica) acquire(v View) []Action {
	a := v.Assignment
	if r.ack != a.Ack() {
		return nil
	}
	for _, s := range v.Slots {
		if s.ReadAt <= r.ackedAt && !r.weak.staleBarrier {
			return nil // read before the acknowledgement: wait for Refresh
		}
		switch {
		case s.State == Free, s.State == Unknown && r.weak.unknownIsFree:
		case s.State == Held && (s.Ack == r.ack || r.weak.noBarrier && s.Member != r.self):
		default:
			return nil
		}
	}
	var acts []Action
	for _, s := range a.Shards(r.self) {
		if _, ok := r.running[s]; !ok {
			r.running[s] = a.Generation
			acts = append(acts, Start{Shard: s, Term: a.Generation})
		}
	}
	return acts
}

// outdated reports whether a is missing, numbered below a generation this
// replica has seen, or another assignment of the generation it acked: not
// to be acted on, but rewritten.
func (r *Replica) outdated(a *Assignment) bool {
	if a == nil {
		return true
	}
	return a.Generation < r.known || a.Generation == r.ack.Generation && a.Ack() != r.ack
}

// propose returns the assignment record this replica would write, if the
// one in v is missing, numbered below a generation already seen, lists
// other members than the slots hold, or was written before this replica
// joined.
func (r *Replica) propose(v View) (Assignment, bool) {
	var members []Member
	for _, s := range v.Slots {
		switch s.State {
		case Held:
			members = append(members, s.Member)
		case Unknown:
			if !r.weak.unknownIsFree {
				return Assignment{}, false // wait until it is settled
			}
		}
	}
	a := v.Assignment
	next := r.known + 1
	if !r.outdated(a) {
		if ms, _ := Assign(Assignment{}, members, 0); slices.Equal(ms, a.Members) {
			return Assignment{}, false
		}
	}
	// From the newest assignment seen, so that the fewest shards move.
	ms, owners := Assign(r.last, members, r.m)
	return Assignment{Generation: next, Members: ms, Owners: owners}, true
}
