//go:build !race

// The exhaustive search walks states in one goroutine: the race detector
// has nothing to find there and makes it five times slower. hack/test.sh
// runs it without -race.

package casp

import (
	"flag"
	"testing"
	"time"
)

var (
	searchFull     = flag.Bool("casp.search.full", false, "run the exhaustive searches at their full bounds (minutes) instead of CI's")
	searchShortest = flag.Bool("casp.search.shortest", false, "after a violation, search again with ever smaller depth bounds for the shortest one")
)

func runSearch(t *testing.T, rules searchRules, b searchBounds) *searcher {
	t.Helper()
	s := &searcher{rules: rules, bounds: b}
	start := time.Now()
	found := s.search()
	t.Logf("%s: %d states explored in %v (ballots ≤ %d, rounds per client %v, %d recovery rounds, depth ≤ %d, restart: %v), violation: %v",
		rules.name, s.states, time.Since(start).Round(time.Millisecond), b.maxCounter, b.clientRounds, b.recoveryRounds, b.maxDepth, !b.noRestart, found)
	if found {
		t.Logf("%s after %d steps:", s.why, len(s.found))
		for i, st := range s.found {
			t.Logf("%3d. %s", i+1, st)
		}
	}
	for found && *searchShortest {
		b.maxDepth = len(s.found) - 1
		shorter := &searcher{rules: rules, bounds: b}
		start := time.Now()
		found = shorter.search()
		t.Logf("%s: depth ≤ %d: %d states in %v, violation: %v", rules.name, b.maxDepth, shorter.states, time.Since(start).Round(time.Millisecond), found)
		if found {
			s = shorter
			t.Logf("%s after %d steps:", s.why, len(s.found))
			for i, st := range s.found {
				t.Logf("%3d. %s", i+1, st)
			}
		}
	}
	return s
}

// ciBounds are what plain go test (and -race) explores; -casp.search.full
// raises them.
func ciBounds() searchBounds {
	if *searchFull {
		return searchBounds{maxCounter: 3, clientRounds: [2]int{1, 2}, recoveryRounds: 1}
	}
	return searchBounds{maxCounter: 2, clientRounds: [2]int{1, 1}, recoveryRounds: 1}
}

func TestSearchFindsNoLostWriteWithShippedRules(t *testing.T) {
	s := runSearch(t, searchRules{name: "shipped rules"}, ciBounds())
	if s.found != nil {
		t.Fatal("the shipped rules lose a chosen write")
	}
}

// Rule (c): the recovering voter's own acceptor takes part in its recovery
// round (it promises and accepts, reporting its empty record).
func TestSearchFindsLostWriteWhenRecoveryCountsOwnAcceptor(t *testing.T) {
	s := runSearch(t, searchRules{name: "rule (c) weakened", ownVote: true, weak: weakening{answerOwnRecovery: true}}, ciBounds())
	if s.found == nil {
		t.Fatal("no violation found")
	}
}

// Rule (b): a restarted voter answers at once, before relearning the record.
func TestSearchFindsLostWriteWhenRestartedVoterAnswersAtOnce(t *testing.T) {
	s := runSearch(t, searchRules{name: "rule (b) weakened", weak: weakening{answerAtOnce: true}}, ciBounds())
	if s.found == nil {
		t.Fatal("no violation found")
	}
}

// No floor: the restarted voter keeps nothing (no saved promise, no clock
// bound) and recovers at any ballot. The lost write needs a second round of
// one client, which multiplies the space: run with -casp.search.full.
func TestSearchFindsLostWriteWithoutFloor(t *testing.T) {
	if !*searchFull {
		t.Skip("needs a second round of one client (16.6 million states before the violation, 10 minutes): run with -casp.search.full")
	}
	s := runSearch(t, searchRules{name: "no promise floor", weak: weakening{ignoreFloor: true}},
		searchBounds{maxCounter: 2, clientRounds: [2]int{1, 2}, recoveryRounds: 1})
	if s.found == nil {
		t.Fatal("no violation found")
	}
}

// Rule (a): accepts are taken for any ballot at or above the promise,
// whatever incarnation promised it, even while recovering. With a floor the
// ballot alone already refuses what the old incarnation promised, so the
// search finds nothing: the incarnation check is defence in depth.
func TestSearchIncarnationCheckRedundantGivenFloor(t *testing.T) {
	if !*searchFull {
		t.Skip("an exhaustive run as long as the shipped rules' one: run with -casp.search.full")
	}
	s := runSearch(t, searchRules{name: "rule (a) weakened, floor kept", weak: weakening{acceptAnyIncarnation: true}},
		searchBounds{maxCounter: 2, clientRounds: [2]int{1, 1}, recoveryRounds: 1})
	if s.found != nil {
		t.Fatal("a violation without the incarnation check: the safety argument in docs/backends/gossip.md is wrong")
	}
}

// adoptBounds let p adopt q's hand-over, spend it, and start a second
// round: counters ≤ 1 (q's round at 1 hands p ballot 3), p two rounds,
// q one. CI's run leaves out the restart (the hand-over needs none);
// -casp.search.full puts it back.
func adoptBounds() searchBounds {
	return searchBounds{maxCounter: 1, clientRounds: [2]int{2, 1}, recoveryRounds: 1, noRestart: !*searchFull}
}

// Adopt's check: a proposer adopts a hand-over only if its ballot is above
// every ballot it has used or seen. Without it, a hand-over delivered twice
// is adopted twice: p spends the ballot on one round, adopts it again and
// spends it on the next, and one ballot carries two values (visible since
// each client round writes its own data). The search keeps hand-overs
// that p can no longer adopt, rather than prune them on that rule.
func TestSearchFindsTwoValuesAtOneBallotWhenAdoptTakesAnyBallot(t *testing.T) {
	s := runSearch(t, searchRules{name: "Adopt's check removed", adoptAny: true}, adoptBounds())
	if s.found == nil {
		t.Fatal("no violation found")
	}
}

// The same bounds with the shipped rules: p adopts each hand-over once.
func TestSearchAdoptsEachHandOverOnce(t *testing.T) {
	if !*searchFull {
		t.Skip("1.5 million states, a minute: run with -casp.search.full")
	}
	s := runSearch(t, searchRules{name: "shipped rules, p adopts and spends a hand-over, then runs a second round"}, adoptBounds())
	if s.found != nil {
		t.Fatal("the shipped rules lose a chosen write or spend a ballot twice")
	}
}
