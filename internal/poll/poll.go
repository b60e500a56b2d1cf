// Package poll is the one wait helper of the tests: poll a condition until
// it holds, and fail the test at a deadline. It polls state a test cannot
// be told about (an elector's view, a cache's expiry), never in place of
// synchronising with what it waits for.
package poll

import (
	"testing"
	"time"
)

// Until polls cond until it holds, first every millisecond, then less
// often (up to every 10 ms), and fails t (Fatalf, naming what) if it does
// not hold within within.
func Until(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	if !Within(within, cond) {
		t.Fatalf("timed out after %v waiting for %s", within, what)
	}
}

// Within polls cond as Until does and reports whether it held within
// within, for callers that fail in their own words.
func Within(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	pause := time.Millisecond
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause) // polling a condition with a deadline, not synchronising with it
		pause = min(2*pause, 10*time.Millisecond)
	}
	return true
}
