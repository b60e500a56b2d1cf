package casp

import (
	"testing"
	"time"
)

func recoveringNack(from string, blank bool) Message {
	return Message{Kind: KindNack, Reason: NackRecovering, From: from, Blank: blank}
}

// The clock runs while rounds hear a majority recovering, keeps running
// through rounds that hear too few to tell (issue #23, finding 4), and
// starts again only when enough voters answer as ready.
func TestReinitClockRunsWhileAMajorityRecovers(t *testing.T) {
	const after = 10 * time.Second
	c := ReinitClock{After: after}
	tally := func(ms ...Message) *RecoveryTally {
		x := NewRecoveryTally(3)
		for _, m := range ms {
			x.Add(m)
		}
		return x
	}
	steps := []struct {
		at   time.Duration
		t    *RecoveryTally
		want ReinitStep
	}{
		{0, tally(), ReinitWait}, // heard nothing: the clock does not start
		{time.Second, tally(recoveringNack("b", false)), ReinitStarted}, // b and this voter: a majority
		{2 * time.Second, tally(), ReinitWait},                          // a round that timed out leaves it running
		{after, tally(recoveringNack("b", false)), ReinitWait},          // 9 s
		{after + time.Second, tally(), ReinitWait},                      // 10 s, but this round learned nothing
		{after + 2*time.Second, tally(recoveringNack("b", false)), ReinitNow},
		{after + 3*time.Second, tally(Message{Kind: KindPromise, From: "b"}, Message{Kind: KindPromise, From: "c"}), ReinitWait}, // both ready: stopped
		{after + 4*time.Second, tally(recoveringNack("c", false)), ReinitStarted},
		{after + 5*time.Second, tally(Message{Kind: KindPromise, From: "b"}), ReinitWait}, // one ready of two: a majority may still recover
		{2*after + 4*time.Second, tally(recoveringNack("c", false)), ReinitNow},
	}
	for i, s := range steps {
		if got := c.Step(s.at, s.t); got != s.want {
			t.Fatalf("step %d at %v: %d, want %d", i, s.at, got, s.want)
		}
	}
}

// A new election needs every other voter blank; a ready voter that holds
// nothing is not blank (issue #23, finding 1), except under the weakened
// rule the simulation uses to show the write it forgets.
func TestRecoveryTallyNewElectionNeedsEveryOtherVoterBlank(t *testing.T) {
	emptyPromise := Message{Kind: KindPromise, From: "b"} // ready, accepted the zero ballot
	for _, weak := range []bool{false, true} {
		x := NewRecoveryTally(3)
		x.holdsNothing = weak
		x.Add(recoveringNack("c", true))
		if x.NewElection() {
			t.Fatalf("weak %v: a new election on one voter's answer of two", weak)
		}
		x.Add(emptyPromise)
		if x.NewElection() != weak {
			t.Fatalf("weak %v: new election %v beside a ready voter that holds nothing but is not blank", weak, !weak)
		}
		x.Add(Message{Kind: KindPromise, From: "b", Blank: true})
		if !x.NewElection() {
			t.Fatalf("weak %v: no new election with every other voter blank", weak)
		}
	}
}

// Next carries a recovery's blank answers into its next round, and only
// those: the re-initialisation clock reads each round's ready and
// recovering voters afresh.
func TestRecoveryTallyNextCarriesOnlyBlankAnswers(t *testing.T) {
	x := NewRecoveryTally(5)
	x.Add(recoveringNack("b", true))
	x.Add(Message{Kind: KindPromise, From: "c", Blank: true})
	x.Add(Message{Kind: KindPromise, From: "d"})
	y := x.Next()
	if ready, recovering := y.Heard(); ready != 0 || recovering != 0 {
		t.Fatalf("the next round starts having heard %d ready and %d recovering voters, want none", ready, recovering)
	}
	if y.NewElection() {
		t.Fatal("a new election with two of four other voters blank")
	}
	y.Add(recoveringNack("e", true))
	if y.NewElection() {
		t.Fatal("a new election with d, ready and not blank, never heard blank")
	}
	y.Add(Message{Kind: KindPromise, From: "d", Blank: true}) // d restarted with an empty StateDir
	if !y.NewElection() {
		t.Fatal("no new election with every other voter heard blank over two rounds")
	}
}
