package casp

import (
	"flag"
	"testing"
	"time"
)

var searchFull = flag.Bool("casp.search.full", false, "run the exhaustive searches at their full bounds (minutes) instead of CI's")

func runSearch(t *testing.T, rules searchRules, b searchBounds) *searcher {
	t.Helper()
	s := &searcher{rules: rules, bounds: b}
	start := time.Now()
	found := s.search()
	t.Logf("%s: %d states explored in %v (ballots ≤ %d, rounds per client %v, %d recovery rounds, depth ≤ %d), violation: %v",
		rules.name, s.states, time.Since(start).Round(time.Millisecond), b.maxCounter, b.clientRounds, b.recoveryRounds, b.maxDepth, found)
	if found {
		t.Logf("%s after %d steps:", s.why, len(s.found))
		for i, st := range s.found {
			t.Logf("%3d. %s", i+1, st)
		}
	}
	return s
}

func TestSearchFindsNoLostWriteWithShippedRules(t *testing.T) {
	s := runSearch(t, searchRules{name: "shipped rules"}, searchBounds{maxCounter: 2, clientRounds: [2]int{1, 1}, recoveryRounds: 1})
	if s.found != nil {
		t.Fatal("the shipped rules lose a chosen write")
	}
}

func TestSearchFindsLostWriteWhenRecoveryCountsOwnAcceptor(t *testing.T) {
	s := runSearch(t, searchRules{name: "rule (c) weakened", ownVote: true, weak: weakening{answerOwnRecovery: true}},
		searchBounds{maxCounter: 2, clientRounds: [2]int{1, 1}, recoveryRounds: 1})
	if s.found == nil {
		t.Fatal("no violation found")
	}
}

func TestSearchFindsLostWriteWhenRestartedVoterAnswersAtOnce(t *testing.T) {
	s := runSearch(t, searchRules{name: "rule (b) weakened", weak: weakening{answerAtOnce: true}},
		searchBounds{maxCounter: 2, clientRounds: [2]int{1, 1}, recoveryRounds: 1})
	if s.found == nil {
		t.Fatal("no violation found")
	}
}

func TestSearchFindsLostWriteWithoutFloor(t *testing.T) {
	if !*searchFull {
		t.Skip("needs a third client round (millions of states): run with -casp.search.full")
	}
	s := runSearch(t, searchRules{name: "no promise floor", weak: weakening{ignoreFloor: true}},
		searchBounds{maxCounter: 2, clientRounds: [2]int{1, 2}, recoveryRounds: 1})
	if s.found == nil {
		t.Fatal("no violation found")
	}
}
