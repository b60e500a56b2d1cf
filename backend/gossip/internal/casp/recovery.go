package casp

import (
	"maps"
	"time"
)

// RecoveryTally is what a recovery round of a recovering voter heard
// from the other voters: which answered as ready (anything but a
// recovering refusal), which as recovering, and which said they were
// blank ([Message.Blank]). The glue's recovery loop feeds it every reply
// and decides from it: [RecoveryTally.NewElection], then
// [ReinitClock.Step]. The tests' simulation drives the same type, so the
// rule it checks is the shipped one.
type RecoveryTally struct {
	voters                   int
	ready, recovering, blank map[string]bool
	// holdsNothing counts a ready voter whose promise reports nothing
	// accepted as blank: the rule before issue #23, finding 1. Only the
	// tests set it, to show the simulation finds the write it forgets.
	holdsNothing bool
}

// NewRecoveryTally returns an empty tally for a cluster of voters voters.
func NewRecoveryTally(voters int) *RecoveryTally {
	return &RecoveryTally{voters: voters, ready: map[string]bool{}, recovering: map[string]bool{}, blank: map[string]bool{}}
}

// Next returns the tally for the next round of the same recovery (of this
// voter's process, not restarted): the blank answers carry over, the ready
// and recovering ones do not (ReinitClock reads a round's own). A voter
// that answered blank to any recovery round of this process serves the
// new election as well as one that answers blank now: its argument
// (docs/backends/gossip.md, "A new election") needs only that the answer
// came after this process started; the process that answered had taken
// part in no round that may write until then. Counting one round alone,
// five voters under -race on a loaded machine rarely all answered within
// one round, and stayed recovering for ReinitializeAfter.
func (t *RecoveryTally) Next() *RecoveryTally {
	n := NewRecoveryTally(t.voters)
	n.holdsNothing = t.holdsNothing
	maps.Copy(n.blank, t.blank)
	return n
}

// Add takes one reply to the round (any kind; a voter counts once per
// class, however many replies it sent).
func (t *RecoveryTally) Add(m Message) {
	if m.Kind == KindNack && m.Reason == NackRecovering {
		t.recovering[m.From] = true
	} else {
		t.ready[m.From] = true
	}
	if m.Blank || (t.holdsNothing && m.Kind == KindPromise && m.Accepted.IsZero()) {
		t.blank[m.From] = true // whatever it answered: blank when it did
	}
}

// NewElection reports whether every other voter answered blank (in this
// round or, through Next, an earlier one of this recovery): the
// recovering voter may then start a new election ([Acceptor.NewElection],
// which refuses unless it is blank too) instead of waiting for the
// re-initialisation clock. A voter that is ready but holds nothing is not
// enough: the accepts of every write may have gone to a quorum without it,
// which has since lost its state (issue #23, finding 1).
func (t *RecoveryTally) NewElection() bool { return len(t.blank) == t.voters-1 }

// Heard returns how many other voters answered as ready and as
// recovering.
func (t *RecoveryTally) Heard() (ready, recovering int) { return len(t.ready), len(t.recovering) }

// ReinitStep is what [ReinitClock.Step] tells the recovery loop to do.
type ReinitStep uint8

const (
	// ReinitWait: run another recovery round.
	ReinitWait ReinitStep = iota
	// ReinitStarted: the clock started with this round (log it), then
	// as ReinitWait.
	ReinitStarted
	// ReinitNow: a majority of the voters, this one included, has been
	// recovering for the clock's duration: re-initialise the register
	// ([Acceptor.Reinitialize]).
	ReinitNow
)

// ReinitClock is a recovering voter's re-initialisation clock: it runs
// while its recovery rounds hear a majority of the voters (this one
// included) recovering, and tells the loop to re-initialise once it has
// run for After. It starts again only when a round hears enough voters
// answer as ready that fewer than a majority can be recovering. A round
// that heard too few voters to tell (it timed out, or they were slow)
// leaves it as it is: while a majority recovers, none of them can recover
// (each needs a quorum of ready others, and fewer than a quorum are
// ready), so a majority seen recovering stays so until one of them
// re-initialises, which is this same rule. The zero value is stopped;
// set After.
type ReinitClock struct {
	// After is ReinitializeAfter.
	After   time.Duration
	since   time.Duration
	running bool
}

// Step takes the tally of a recovery round that did not recover the
// voter, at now (a monotonic clock: any origin, the same for every call),
// and says what to do.
func (c *ReinitClock) Step(now time.Duration, t *RecoveryTally) ReinitStep {
	quorum := Quorum(t.voters)
	switch ready, recovering := t.Heard(); {
	case ready >= t.voters-quorum+1:
		// Enough voters answered as ready that fewer than a majority
		// can be recovering: the clock starts again.
		c.running = false
	case recovering+1 < quorum:
		// Too few heard to tell: the clock, if it runs, keeps running.
	case !c.running:
		c.running, c.since = true, now
		return ReinitStarted
	case now-c.since >= c.After:
		return ReinitNow
	}
	return ReinitWait
}

// Running returns how long the clock has run at now, and false if it is
// stopped.
func (c *ReinitClock) Running(now time.Duration) (time.Duration, bool) {
	if !c.running {
		return 0, false
	}
	return now - c.since, true
}
