package casp

import (
	"cmp"
	"fmt"
)

// Ballot identifies one round of one proposer process. Ballots are totally
// ordered by Counter, then Node, then Incarnation, and no two rounds anywhere
// share one: a proposer never reuses a counter, and a restarted process has a
// new Incarnation.
//
// With clock-bounded floors (AcceptorConfig.MaxAhead > 0) Counter is in the
// same unit as the clock the caller passes in (Unix milliseconds in the
// glue), since a proposer never picks a counter below its own clock.
type Ballot struct {
	Counter     uint64 `json:"c"`
	Node        string `json:"n,omitempty"`
	Incarnation uint64 `json:"i,omitempty"`
}

// Compare returns -1, 0 or +1 as b is below, equal to or above o.
func (b Ballot) Compare(o Ballot) int {
	if c := cmp.Compare(b.Counter, o.Counter); c != 0 {
		return c
	}
	if c := cmp.Compare(b.Node, o.Node); c != 0 {
		return c
	}
	return cmp.Compare(b.Incarnation, o.Incarnation)
}

// Less reports whether b is below o.
func (b Ballot) Less(o Ballot) bool { return b.Compare(o) < 0 }

// IsZero reports whether b is the zero ballot, below every ballot a
// proposer uses.
func (b Ballot) IsZero() bool { return b == Ballot{} }

// String formats b for logs, e.g. "17@node-a/3f2a".
func (b Ballot) String() string {
	return fmt.Sprintf("%d@%s/%x", b.Counter, b.Node, b.Incarnation)
}

// maxBallot returns the higher of a and b.
func maxBallot(a, b Ballot) Ballot {
	if a.Less(b) {
		return b
	}
	return a
}
