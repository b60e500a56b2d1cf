package shard

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"slices"
)

// Member is one replica's membership: the slot record it holds and its
// identity. Two incarnations of one identity in different slots are
// different members; the identity only ranks shards (rendezvous), so a
// replica that comes back under its old name prefers the shards it had.
type Member struct {
	Slot int
	ID   string
}

func (m Member) String() string { return fmt.Sprintf("%s@%d", m.ID, m.Slot) }

// Assignment is one generation of the shard map: which member owns which
// shard. It is what the assignment record stores. A shard that changes
// owner in generation g is started by its new owner with term g; a shard
// that keeps its owner keeps its term (docs/shards.md).
type Assignment struct {
	Generation int64
	// Members, ordered by slot.
	Members []Member
	// Owners[s] is the index in Members of shard s's owner; len(Owners)
	// is the shard count M.
	Owners []int
}

// Shards returns the shards member m owns in a, in increasing order (none
// if m is not a member).
func (a Assignment) Shards(m Member) []int {
	i := slices.Index(a.Members, m)
	if i < 0 {
		return nil
	}
	var out []int
	for s, o := range a.Owners {
		if o == i {
			out = append(out, s)
		}
	}
	return out
}

// Ack returns a's name for acknowledgements: its generation and a digest
// of its members and owners (FNV-1a, 64 bits).
func (a Assignment) Ack() Ack {
	h := fnv.New64a()
	var b [8]byte
	put := func(x int64) {
		binary.BigEndian.PutUint64(b[:], uint64(x))
		h.Write(b[:])
	}
	put(a.Generation)
	for _, m := range a.Members {
		put(int64(m.Slot))
		put(int64(len(m.ID)))
		h.Write([]byte(m.ID))
	}
	for _, o := range a.Owners {
		put(int64(o))
	}
	return Ack{Generation: a.Generation, Digest: h.Sum64()}
}

// Owner returns the owner of shard s.
func (a Assignment) Owner(s int) Member { return a.Members[a.Owners[s]] }

// assignRules can switch off one of Assign's rules; only the tests set
// them, to show that the checks catch each rule's absence.
type assignRules struct {
	// ignorePrev assigns from scratch, as a stateless hash would.
	ignorePrev bool
	// extraBySlot gives the ⌈M/N⌉ shares to the lowest slots instead of
	// to the members that hold the most already.
	extraBySlot bool
	// noCap lets each shard go to its preferred member whatever its load
	// (plain rendezvous hashing).
	noCap bool
}

// Assign returns the owners of m shards among members (a set: order and
// duplicates do not matter) that keeps as much of prev as a balanced
// assignment can: every member ends with ⌊m/N⌋ or ⌈m/N⌉ shards, and the
// number of shards whose owner changes is the least any balanced
// assignment reaches from prev (prev's members that are gone lose all
// theirs; the ⌈m/N⌉ shares go to the members holding the most). Which
// shards move, and to whom, is decided by rendezvous rank, so the result
// depends only on prev, the member set and m. prev may be the zero
// Assignment (a first assignment, or one whose record was lost).
func Assign(prev Assignment, members []Member, m int) ([]Member, []int) {
	return assign(prev, members, m, assignRules{})
}

func assign(prev Assignment, members []Member, m int, rules assignRules) ([]Member, []int) {
	ms := slices.Clone(members)
	slices.SortFunc(ms, func(a, b Member) int {
		return cmp.Or(cmp.Compare(a.Slot, b.Slot), cmp.Compare(a.ID, b.ID))
	})
	ms = slices.Compact(ms)
	owners := make([]int, m)
	n := len(ms)
	if n == 0 {
		for s := range owners {
			owners[s] = -1
		}
		return ms, owners
	}
	// Keep every shard whose owner is still a member.
	load := make([]int, n)
	for s := range owners {
		owners[s] = -1
		if rules.ignorePrev || len(prev.Owners) != m || prev.Owners[s] < 0 || prev.Owners[s] >= len(prev.Members) {
			continue
		}
		if i := slices.Index(ms, prev.Members[prev.Owners[s]]); i >= 0 {
			owners[s] = i
			load[i]++
		}
	}
	// Targets: ⌈m/n⌉ for the r members holding the most, ⌊m/n⌋ for the rest.
	q, r := m/n, m%n
	target := make([]int, n)
	order := make([]int, n)
	for i := range order {
		order[i] = i
		target[i] = q
	}
	if !rules.extraBySlot {
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(load[b], load[a]) })
	}
	for _, i := range order[:r] {
		target[i]++
	}
	if rules.noCap {
		for i := range target {
			target[i] = m
		}
	}
	// Over-full members give up the shards they rank lowest.
	for i := range ms {
		if load[i] <= target[i] {
			continue
		}
		var held []int
		for s, o := range owners {
			if o == i {
				held = append(held, s)
			}
		}
		slices.SortFunc(held, func(a, b int) int {
			return cmp.Or(cmp.Compare(score(ms[i].ID, a), score(ms[i].ID, b)), cmp.Compare(a, b))
		})
		for _, s := range held[:load[i]-target[i]] {
			owners[s] = -1
			load[i]--
		}
	}
	// Every free shard goes to the member that ranks it highest among
	// those still short.
	for s, o := range owners {
		if o >= 0 {
			continue
		}
		best := -1
		for i := range ms {
			// Ties (one identity in two slots) go to the lower slot.
			if load[i] < target[i] && (best < 0 || score(ms[i].ID, s) > score(ms[best].ID, s)) {
				best = i
			}
		}
		owners[s] = best
		load[best]++
	}
	return ms, owners
}

// score is identity id's rendezvous rank for shard s: FNV-1a of the
// identity and shard, mixed (splitmix64's finaliser) so that ranks of
// neighbouring shards are independent. Fixed, so that every replica and
// every version computes the same assignment.
func score(id string, s int) uint64 {
	h := fnv.New64a()
	h.Write([]byte(id))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(s))
	h.Write(b[:])
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
