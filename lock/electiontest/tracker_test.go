package electiontest

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// recorder captures the failures Check reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Error(args ...any) { r.errs = append(r.errs, fmt.Sprint(args...)) }
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func TestCheckCatchesOverlapAndStaleTerms(t *testing.T) {
	clean := NewTracker()
	clean.End(clean.Begin("a", 1))
	clean.End(clean.Begin("b", 2))
	r := &recorder{TB: t}
	clean.Check(r)
	if len(r.errs) != 0 {
		t.Fatalf("clean hand-over reported: %q", r.errs)
	}

	overlap := NewTracker()
	overlap.Begin("a", 1)
	overlap.Begin("b", 2) // a never ended
	r = &recorder{TB: t}
	overlap.Check(r)
	if len(r.errs) == 0 || !strings.Contains(strings.Join(r.errs, "\n"), "b started term 2 while a still led") {
		t.Fatalf("overlap not reported: %q", r.errs)
	}

	stale := NewTracker()
	stale.End(stale.Begin("a", 5))
	stale.End(stale.Begin("b", 5))
	r = &recorder{TB: t}
	stale.Check(r)
	if len(r.errs) == 0 || !strings.Contains(r.errs[0], "fencing terms must increase") {
		t.Fatalf("repeated term not reported: %q", r.errs)
	}
}

func TestCheckAcceptsOnlyTheHoldersOwnTermReopened(t *testing.T) {
	resumed := NewTracker()
	resumed.End(resumed.Begin("a", 1))
	resumed.End(resumed.Reopen("a", 1))
	resumed.End(resumed.Begin("b", 2))
	r := &recorder{TB: t}
	resumed.Check(r)
	if len(r.errs) != 0 {
		t.Fatalf("a recovered term reported: %q", r.errs)
	}
	for _, tc := range []struct {
		name string
		id   string
		term int64
	}{{"another candidate", "b", 1}, {"another term", "a", 2}} {
		tr := NewTracker()
		tr.End(tr.Begin("a", 1))
		tr.End(tr.Reopen(tc.id, tc.term))
		r := &recorder{TB: t}
		tr.Check(r)
		if len(r.errs) == 0 || !strings.Contains(r.errs[0], "may reopen only the term it led last") {
			t.Errorf("%s reopening: %q", tc.name, r.errs)
		}
	}
}

func TestWaitForWakesOnChange(t *testing.T) {
	tr := NewTracker()
	go tr.Begin("a", 1)
	ts := tr.WaitFor(t, "a to lead", 10*time.Second, func(ts []Term) bool { return len(ts) == 1 })
	if ts[0].ID != "a" || ts[0].Term != 1 {
		t.Fatalf("got %+v", ts)
	}
}
