package shard

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// checkBalanced returns why owners is not a balanced assignment of len(owners)
// shards among n members, or nil.
func checkBalanced(n int, owners []int) error {
	if n == 0 {
		return nil
	}
	load := make([]int, n)
	for s, o := range owners {
		if o < 0 || o >= n {
			return fmt.Errorf("shard %d has no owner (%d)", s, o)
		}
		load[o]++
	}
	q := len(owners) / n
	for i, l := range load {
		if l != q && !(l == q+1 && len(owners)%n != 0) {
			return fmt.Errorf("member %d owns %d shards; %d members, %d shards allow only %d or %d", i, l, n, len(owners), q, q+1)
		}
	}
	return nil
}

// leastMoves is the fewest shards whose owner must change to go from prev
// to any balanced assignment among members, found by trying every choice
// of the members that get ⌈M/N⌉.
func leastMoves(prev Assignment, members []Member, m int) int {
	n := len(members)
	if n == 0 {
		return 0
	}
	load := make([]int, n)
	orphans := 0
	for s := 0; s < m; s++ {
		i := -1
		if len(prev.Owners) == m {
			i = slices.Index(members, prev.Members[prev.Owners[s]])
		}
		if i < 0 {
			orphans++
		} else {
			load[i]++
		}
	}
	q, r := m/n, m%n
	best := -1
	for mask := 0; mask < 1<<n; mask++ {
		if popcount(mask) != r {
			continue
		}
		excess := 0
		for i, l := range load {
			t := q
			if mask&(1<<i) != 0 {
				t++
			}
			excess += max(0, l-t)
		}
		if best < 0 || orphans+excess < best {
			best = orphans + excess
		}
	}
	return best
}

func popcount(x int) int {
	n := 0
	for ; x != 0; x &= x - 1 {
		n++
	}
	return n
}

// moves counts the shards whose owner differs between prev and the new
// assignment (every shard, if prev has another shard count).
func moves(prev Assignment, members []Member, owners []int) int {
	n := 0
	for s, o := range owners {
		if len(prev.Owners) != len(owners) || prev.Owner(s) != members[o] {
			n++
		}
	}
	return n
}

// checkStep returns why going from prev to the assignment of members
// computed with rules is not balanced or not minimal, or nil.
func checkStep(prev Assignment, members []Member, m int, rules assignRules) (Assignment, error) {
	ms, owners := assign(prev, members, m, rules)
	next := Assignment{Generation: prev.Generation + 1, Members: ms, Owners: owners}
	if err := checkBalanced(len(ms), owners); err != nil {
		return next, fmt.Errorf("unbalanced: %w", err)
	}
	if got, least := moves(prev, ms, owners), leastMoves(prev, ms, m); len(prev.Owners) == m && got != least {
		return next, fmt.Errorf("moved %d shards where %d suffice", got, least)
	}
	return next, nil
}

// churn drives a random sequence of joins and leaves over n slots with m
// shards and returns the first violation the checks find, or nil.
func churn(seed uint64, slots, m, steps int, rules assignRules) error {
	rng := rand.New(rand.NewPCG(seed, 1))
	ids := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	present := map[int]string{}
	var prev Assignment
	for step := 0; step < steps; step++ {
		k := rng.IntN(slots)
		if _, ok := present[k]; ok && len(present) > 1 {
			delete(present, k)
		} else {
			present[k] = ids[rng.IntN(len(ids))] // identities may repeat across slots
		}
		var members []Member
		for k, id := range present {
			members = append(members, Member{Slot: k, ID: id})
		}
		next, err := checkStep(prev, members, m, rules)
		if err != nil {
			return fmt.Errorf("seed %d step %d, members %v, %d shards: %w", seed, step, next.Members, m, err)
		}
		prev = next
	}
	return nil
}

// TestAssignIsBalancedAndMovesTheLeast: over random join and leave
// sequences (up to 6 slots, up to 40 shards), every assignment gives each
// member ⌊M/N⌋ or ⌈M/N⌉ shards and moves exactly as many shards as the
// best balanced assignment would, found by trying every choice.
func TestAssignIsBalancedAndMovesTheLeast(t *testing.T) {
	for m := 0; m <= 40; m++ {
		for seed := uint64(0); seed < 20; seed++ {
			if err := churn(seed, 6, m, 30, assignRules{}); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestAssignChecksCatchEachWeakenedRule: the checks above fail when a rule
// of Assign is switched off: without the previous assignment (a stateless
// hash) and with the ⌈M/N⌉ shares given by slot order, too many shards
// move; without the cap (plain rendezvous), the shares are unbalanced.
func TestAssignChecksCatchEachWeakenedRule(t *testing.T) {
	for name, rules := range map[string]assignRules{
		"stateless":   {ignorePrev: true},
		"extraBySlot": {extraBySlot: true},
		"noCap":       {noCap: true},
	} {
		caught := false
		for seed := uint64(0); seed < 50 && !caught; seed++ {
			caught = churn(seed, 6, 13, 30, rules) != nil
		}
		if !caught {
			t.Errorf("rule %s weakened: no violation found; the checks cannot see it", name)
		}
	}
}

// TestJoinAndLeaveMoveOnlyTheShardsOfTheReplicaThatChanged: from a
// balanced assignment, a joining member only receives shards (nobody else
// trades) and a leaving member's shards are the only ones to move.
func TestJoinAndLeaveMoveOnlyTheShardsOfTheReplicaThatChanged(t *testing.T) {
	for n := 1; n <= 7; n++ {
		for m := 0; m <= 50; m++ {
			var members []Member
			for k := 0; k < n; k++ {
				members = append(members, Member{Slot: k, ID: fmt.Sprint("r", k)})
			}
			ms, owners := Assign(Assignment{}, members, m)
			base := Assignment{Members: ms, Owners: owners}
			joiner := Member{Slot: n, ID: "new"}
			jm, jo := Assign(base, append(slices.Clone(members), joiner), m)
			for s, o := range jo {
				if jm[o] != base.Owner(s) && jm[o] != joiner {
					t.Fatalf("n=%d m=%d: join moved shard %d from %v to %v, not to the joiner", n, m, s, base.Owner(s), jm[o])
				}
			}
			if n == 1 {
				continue
			}
			leaver := members[n/2]
			lm, lo := Assign(base, slices.Delete(slices.Clone(members), n/2, n/2+1), m)
			for s, o := range lo {
				if lm[o] != base.Owner(s) && base.Owner(s) != leaver {
					t.Fatalf("n=%d m=%d: leave of %v moved shard %d of %v", n, m, leaver, s, base.Owner(s))
				}
			}
		}
	}
}

// TestAssignDependsOnlyOnTheMemberSet: the order and repetition of the
// members given do not change the result.
func TestAssignDependsOnlyOnTheMemberSet(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	members := []Member{{0, "a"}, {3, "b"}, {1, "c"}, {4, "a"}, {2, "e"}}
	wantM, wantO := Assign(Assignment{}, members, 97)
	for i := 0; i < 50; i++ {
		shuffled := slices.Clone(members)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		shuffled = append(shuffled, shuffled[rng.IntN(len(shuffled))])
		gotM, gotO := Assign(Assignment{}, shuffled, 97)
		if !slices.Equal(gotM, wantM) || !slices.Equal(gotO, wantO) {
			t.Fatalf("members %v gave another assignment than %v", shuffled, members)
		}
	}
}

// TestAssignOfAThousandShardsIsBalancedAfterEveryChange is the issue's
// target size: 1,000 shards, up to 10 replicas, through a rolling restart.
func TestAssignOfAThousandShardsIsBalancedAfterEveryChange(t *testing.T) {
	var members []Member
	for k := 0; k < 10; k++ {
		members = append(members, Member{Slot: k, ID: fmt.Sprintf("pod-%d", k)})
	}
	ms, owners := Assign(Assignment{}, members, 1000)
	prev := Assignment{Members: ms, Owners: owners}
	for k := 0; k < 10; k++ {
		// pod-k restarts: it leaves, then comes back in the same slot.
		for _, step := range [][]Member{slices.Delete(slices.Clone(members), k, k+1), members} {
			next, err := checkStep(prev, step, 1000, assignRules{})
			if err != nil {
				t.Fatalf("restart of pod-%d: %v", k, err)
			}
			prev = next
		}
	}
}
