package gossip

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/backend/gossip/gossiptest"
	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// acceptorState returns voter l's acceptor state.
func acceptorState(l *Lock) casp.State {
	l.accMu.Lock()
	defer l.accMu.Unlock()
	return l.acc.State()
}

// Issue #23, finding 1. Three voters with StateDirs; record B is chosen by
// v2 and v3 while v1, the slowest voter, promised the writer's rounds but
// accepted nothing: its promises arrive late, so the accepts go to the
// first two. Then v2 and v3 restart with empty StateDirs. B survives
// nowhere, so the register must stay unavailable until ReinitializeAfter:
// a voter holding nothing is no proof that nothing was chosen, and the
// new-election shortcut must not re-initialise the register at once.
// wantBlank says v1 must be blank (casp.Acceptor.Blank) before the writes.
func testMajorityWipedBesideAVoterHoldingNothing(t *testing.T, wantBlank bool, setup func(c *cluster)) {
	const reinit = 8 * time.Second
	c := newCluster(t, 3, true, func(o *Options) { o.ReinitializeAfter = reinit })
	setup(c)
	w := c.start("w", nil)
	c.waitMembers(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	slow, wiped := "v1", []string{"v2", "v3"}
	l := c.lock(slow)
	l.accMu.Lock()
	blankBefore := l.acc.Blank()
	l.accMu.Unlock()
	if blankBefore != wantBlank {
		t.Fatalf("%s blank before the writes: %v, want %v", slow, blankBefore, wantBlank)
	}
	c.net.Set(slow, "w", gossiptest.Link{Hold: true}) // its answers reach w only after the writes
	if err := w.Create(ctx, locktest.NewRecord("A", 1)); err != nil {
		t.Fatalf("Create A: %v", err)
	}
	if err := w.Update(ctx, locktest.NewRecord("B", 2)); err != nil {
		t.Fatalf("Update B: %v", err)
	}
	// v1 may have refused w's first prepares (its promise floor is ahead
	// of w's clock): read by rounds, which climb above every ballot w
	// sees, until v1 has promised one of w's. Their accepts go to v2 and
	// v3: they re-accept B.
	deadline := time.Now().Add(20 * time.Second)
	for acceptorState(c.lock(slow)).Promised.Node != "w" {
		if time.Now().After(deadline) {
			t.Fatalf("%s never promised a round of w: %+v", slow, acceptorState(c.lock(slow)))
		}
		if _, err := quorumRead(w, 5*time.Second); err != nil {
			t.Fatalf("read: %v", err)
		}
	}
	c.net.Heal()
	st := acceptorState(c.lock(slow))
	if !st.Value.IsEmpty() {
		t.Fatalf("%s holds %q: the setup needs it to hold nothing", slow, st.Value.Data)
	}
	t.Logf("%s accepted ballot %s and holds nothing", slow, st.Accepted)
	for _, v := range wiped {
		if st := acceptorState(c.lock(v)); holder(t, st.Value) != "B" {
			t.Fatalf("%s holds %s, want B", v, holder(t, st.Value))
		}
	}

	for _, v := range wiped {
		c.wipe(v)
	}
	restarted := time.Now()
	for _, v := range wiped {
		c.start(v, nil)
	}
	// Until ReinitializeAfter (less a margin for this process's timers),
	// no restarted voter may become ready, and no read may return the
	// empty register.
	end := restarted.Add(reinit - time.Second)
	reads, failed := 0, 0
	for time.Now().Before(end) {
		for _, v := range wiped {
			if c.lock(v).Ready() == nil {
				t.Fatalf("%s, restarted with an empty StateDir, is ready %v after the restart, before ReinitializeAfter (%v): B was forgotten",
					v, time.Since(restarted).Round(time.Millisecond), reinit)
			}
		}
		v, err := quorumRead(w, min(time.Second, time.Until(end)))
		reads++
		if err != nil {
			failed++
			continue
		}
		if got := holder(t, v); got != "B" {
			t.Fatalf("a quorum read %v after the restart returned holder %s, want B or no answer before ReinitializeAfter (%v)",
				time.Since(restarted).Round(time.Millisecond), got, reinit)
		}
	}
	t.Logf("%d reads before ReinitializeAfter, %d without an answer", reads, failed)
	// Then the voters re-initialise, as documented: the register is
	// available again, and empty.
	for _, v := range wiped {
		c.waitReady(v, 30*time.Second)
	}
	readyAfter := time.Since(restarted)
	for _, v := range wiped {
		c.waitHeard("w", v, 20*time.Second)
	}
	v, err := quorumRead(w, 10*time.Second)
	if err != nil {
		t.Fatalf("read after the re-initialisation: %v", err)
	}
	t.Logf("ready %v after the restart (ReinitializeAfter %v); the register reads holder %s", readyAfter.Round(time.Millisecond), reinit, holder(t, v))
	if readyAfter < reinit {
		t.Errorf("ready %v after the restart, before ReinitializeAfter (%v)", readyAfter, reinit)
	}
}

// v1 is a voter of the new election that started the register: it stays
// blank (casp.Acceptor.Blank) only until it promises a writer's round.
func TestMajorityWipedAfterANewElectionWaitsForReinitializeAfter(t *testing.T) {
	testMajorityWipedBesideAVoterHoldingNothing(t, true, func(*cluster) {})
}

// v1 holds the empty register from its StateDir, at the zero ballot (as a
// re-initialisation leaves it): ready, having accepted nothing, the very
// state the shortcut used to count as new.
func TestMajorityWipedBesideAnEmptyRegisterWaitsForReinitializeAfter(t *testing.T) {
	testMajorityWipedBesideAVoterHoldingNothing(t, false, func(c *cluster) {
		for _, v := range c.voters {
			c.stop(v)
			c.mu.Lock()
			st := newFileStorage(c.dirs[v], c.name)
			c.mu.Unlock()
			old, _, err := st.Load()
			if err != nil {
				t.Fatal(err)
			}
			if err := st.Save(casp.State{Promised: old.Promised, HasRecord: true}); err != nil {
				t.Fatal(err)
			}
		}
		for _, v := range c.voters {
			c.start(v, nil)
		}
		c.waitMembers(3)
		for _, v := range c.voters {
			c.waitReady(v, 10*time.Second)
		}
	})
}

// Voters with empty StateDirs started together, each running the elector
// from its start, as the processes of a new StatefulSet do: the register
// starts empty as soon as the voters hear each other (the new election),
// without waiting ReinitializeAfter (25 s by default), and the first
// elector's read proves the lock new (lock.ErrNeverWritten), so it leads
// term 1 at once instead of standing a claim (RenewDeadline +
// max(LeaseDuration, 2.2 × RetryPeriod): 7 s with testDurations). Before
// the proof, the first leader came 11 s after the start.
func TestVotersWithEmptyStateDirsStartedTogetherElect(t *testing.T) {
	for _, n := range []int{3, 5} {
		t.Run(fmt.Sprintf("%d voters", n), func(t *testing.T) {
			began := time.Now()
			c := startCluster(t, n, true, nil)
			el := newElection(c, testDurations)
			for _, v := range c.voters {
				el.run(v)
			}
			for _, v := range c.voters {
				c.waitReady(v, DefaultReinitializeAfter/2)
			}
			ready := time.Since(began)
			lead := el.leaderAmong(c.voters, 30*time.Second)
			t.Logf("%d voters: all ready %v after the first start, %s leads term %d %v after it",
				n, ready.Round(time.Millisecond), lead.ID, lead.Term, lead.Start.Sub(began).Round(time.Millisecond))
			if claims := el.claims.Load(); lead.Term != 1 || claims != 0 {
				t.Errorf("%s leads term %d after %d claims; want term 1 and no claim: the lock was not proved new", lead.ID, lead.Term, claims)
			}
		})
	}
}
