package electiontest

import (
	"fmt"
	"sync"
	"testing"
	"time"
)

// Term is one leader's tenure as its own code saw it.
type Term struct {
	ID         string
	Term       int64
	Start, End time.Time
	// Reopened: the leader of the term before, in that same term, after
	// it rode out a store outage (Config.Recover) with its gate closed.
	Reopened bool
}

// Tracker records the terms of electors under test, so that every
// backend's tests check the same thing the same way: two candidates never
// lead at once, and terms (fencing tokens) strictly increase. It records
// who leads, and flags any moment two candidates lead at
// once. Leaders call Begin first thing in their function and End before
// they return (or when their context is cancelled). The zero value is not
// ready; use NewTracker.
type Tracker struct {
	mu      sync.Mutex
	current string
	terms   []Term
	overlap []string
	changed chan struct{} // closed and replaced on every Begin/End
}

// NewTracker returns an empty tracker.
func NewTracker() *Tracker { return &Tracker{changed: make(chan struct{})} }

// Begin records that id started leading in term n, and returns the index
// of that term for End.
func (tr *Tracker) Begin(id string, n int64) (index int) { return tr.begin(id, n, false) }

func (tr *Tracker) begin(id string, n int64, reopened bool) (index int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.current != "" {
		tr.overlap = append(tr.overlap, fmt.Sprintf("%s started term %d while %s still led", id, n, tr.current))
	}
	tr.current = id
	tr.terms = append(tr.terms, Term{ID: id, Term: n, Start: time.Now(), Reopened: reopened})
	tr.notify()
	return len(tr.terms) - 1
}

// Reopen records that id leads again in term n, the term it led last,
// after riding out a store outage (Config.Recover): its write gate, closed
// meanwhile, is open again. Check accepts it only right after id's own
// term n.
func (tr *Tracker) Reopen(id string, n int64) (index int) { return tr.begin(id, n, true) }

// End records the end of the term Begin returned index for, if it has not
// ended yet.
func (tr *Tracker) End(index int) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tm := &tr.terms[index]
	if !tm.End.IsZero() {
		return
	}
	tm.End = time.Now()
	if tr.current == tm.ID && index == len(tr.terms)-1 {
		tr.current = ""
	}
	tr.notify()
}

// EndOpen ends id's term if it is open: for a leader whose work is stopped
// from outside, before it releases.
func (tr *Tracker) EndOpen(id string) {
	tr.mu.Lock()
	i := len(tr.terms) - 1
	open := i >= 0 && tr.terms[i].ID == id && tr.terms[i].End.IsZero()
	tr.mu.Unlock()
	if open {
		tr.End(i)
	}
}

func (tr *Tracker) notify() {
	close(tr.changed)
	tr.changed = make(chan struct{})
}

// Terms returns the terms recorded so far, in order.
func (tr *Tracker) Terms() []Term {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]Term(nil), tr.terms...)
}

// WaitFor waits, up to within, until cond holds on the recorded terms, and
// returns them.
func (tr *Tracker) WaitFor(t testing.TB, what string, within time.Duration, cond func(terms []Term) bool) []Term {
	t.Helper()
	deadline := time.After(within)
	for {
		tr.mu.Lock()
		terms := append([]Term(nil), tr.terms...)
		ch := tr.changed
		tr.mu.Unlock()
		if cond(terms) {
			return terms
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s; terms so far: %+v", within, what, terms)
		}
	}
}

// Check fails t if two candidates ever led at once, or terms did not
// strictly increase (a term Reopen recorded must follow its own holder's
// span in that term).
func (tr *Tracker) Check(t testing.TB) {
	t.Helper()
	tr.mu.Lock()
	defer tr.mu.Unlock()
	for _, o := range tr.overlap {
		t.Error(o)
	}
	for i := 1; i < len(tr.terms); i++ {
		prev, cur := tr.terms[i-1], tr.terms[i]
		if cur.Reopened {
			if cur.ID != prev.ID || cur.Term != prev.Term {
				t.Errorf("%s reopened term %d after %s's term %d: a leader may reopen only the term it led last", cur.ID, cur.Term, prev.ID, prev.Term)
			}
		} else if cur.Term <= prev.Term {
			t.Errorf("term %d (%s) after term %d (%s): fencing terms must increase", cur.Term, cur.ID, prev.Term, prev.ID)
		}
		if !prev.End.IsZero() && cur.Start.Before(prev.End) {
			t.Errorf("%s started term %d at %v, before %s ended term %d at %v", cur.ID, cur.Term, cur.Start, prev.ID, prev.Term, prev.End)
		}
	}
}
