package gossip

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// quorumRead reads the register through l by a quorum round, whatever
// l's cache holds.
func quorumRead(l *Lock, within time.Duration) (casp.Value, error) {
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	out, err := l.run(ctx, "read", func(now uint64) *casp.Round { return l.prop.Start(now, casp.Read) })
	return out.Value, err
}

func holder(t *testing.T, v casp.Value) string {
	t.Helper()
	if v.IsEmpty() {
		return "<empty>"
	}
	rec, err := decodeRecord(v.Data)
	if err != nil {
		t.Fatalf("decoding %q: %v", v.Data, err)
	}
	return rec.HolderIdentity
}

// testVoterRestart restarts voter v3 without its state right after it
// sends crashOn for the write of record B, which only v1 and v3 can take
// (the writer's link to v2 is cut). Then v1 is cut off, so that any quorum
// needs v3: a v3 that answered before relearning B would let a read miss
// B (a lost write). The read must fail until v3 has recovered, then return
// B.
func testVoterRestart(t *testing.T, crashOn kind) {
	c := newCluster(t, 3, false, fastReinit)
	w := c.start("w", nil)
	c.waitMembers(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Create(ctx, locktest.NewRecord("A", 1)); err != nil {
		t.Fatalf("Create A: %v", err)
	}
	c.net.Cut("w", "v2")

	var once sync.Once
	restarted := make(chan struct{})
	replied := func(k kind, to string) {
		if k == crashOn && to == "w" {
			once.Do(func() {
				go func() {
					c.restart("v3")
					close(restarted)
				}()
			})
		}
	}
	if crashOn == kindPromise {
		// The Create's accepts prepared w's next ballot, so B would be
		// written by accepts alone: drop that for a full round, whose
		// prepare v3 promises. After accept, either round reaches v3:
		// the prepared one, or, if it went to v2 (cut) and stalled, the
		// full round that replaces it.
		w.propMu.Lock()
		w.prop.DropPrepared()
		w.propMu.Unlock()
	}
	c.lock("v3").replied.Store(&replied)
	errB := w.Update(ctx, locktest.NewRecord("B", 2))
	t.Logf("Update B across the restart: %v", errB)
	select {
	case <-restarted:
	case <-ctx.Done():
		t.Fatal("v3 was never restarted: the crash point was not reached")
	}
	c.waitReady("v3", 20*time.Second)
	c.net.Heal()

	// Any write B that was chosen must survive a quorum that needs v3.
	if errB != nil {
		// Uncertain: whatever a full quorum reads now is what was chosen.
		v, err := quorumRead(w, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if holder(t, v) != "B" {
			t.Skipf("write B was not chosen (%s holds); nothing to lose", holder(t, v))
		}
	}
	// The read below needs w to reach the restarted v3 at its new address:
	// wait for memberlist to tell w (what this test checks is that the
	// chosen write survives, not how soon w learns the address).
	c.waitHeard("w", "v3", 30*time.Second)
	c.net.Isolate("v1", []string{"v2", "v3", "w"})
	v, err := quorumRead(w, 10*time.Second)
	if err != nil {
		t.Fatalf("read through v2 and the restarted v3: %v", err)
	}
	if got := holder(t, v); got != "B" {
		t.Fatalf("a quorum of v2 and the restarted v3 reads holder %s: the chosen write B was lost", got)
	}
}

func TestVoterRestartedWithoutStateAfterPromiseKeepsChosenWrite(t *testing.T) {
	testVoterRestart(t, kindPromise)
}

func TestVoterRestartedWithoutStateAfterAcceptKeepsChosenWrite(t *testing.T) {
	testVoterRestart(t, kindAccepted)
}

// A voter restarted without state answers nothing until it has recovered
// from a majority of the others: with the others cut off it stays
// unavailable, it never answers with an empty record.
func TestRestartedVoterIsUnavailableNotUnsafe(t *testing.T) {
	c, w, ctx := threeVotersAnd(t, "w")
	if err := w.Create(ctx, locktest.NewRecord("A", 1)); err != nil {
		t.Fatal(err)
	}
	c.net.Cut("w", "v2") // A is on all three; B only on v1 and v3
	if err := w.Update(ctx, locktest.NewRecord("B", 2)); err != nil {
		t.Fatal(err)
	}
	c.net.Heal()
	c.net.Isolate("v1", []string{"v2", "v3", "w"})
	c.restart("v3")
	if err := c.lock("v3").Ready(); err == nil {
		t.Fatal("v3 restarted without state reports ready before recovering")
	}
	if v, err := quorumRead(w, 3*time.Second); err == nil {
		t.Fatalf("read with v1 cut off and v3 recovering returned holder %s; it must be unavailable", holder(t, v))
	}
	c.net.Heal()
	c.waitReady("v3", 20*time.Second)
	c.net.Isolate("v1", []string{"v2", "v3", "w"})
	v, err := quorumRead(w, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if holder(t, v) != "B" {
		t.Fatalf("after recovery a quorum of v2 and v3 reads %s, want B", holder(t, v))
	}
}

func TestMajorityRestartWithStateDirKeepsTermsIncreasing(t *testing.T) {
	c := newCluster(t, 3, true, nil)
	c.start("c1", nil)
	c.waitMembers(4)
	el := newElection(c, testDurations)
	for _, id := range []string{"v1", "v2", "v3", "c1"} {
		el.run(id)
	}
	first := el.leaderAmong([]string{"v1", "v2", "v3", "c1"}, 30*time.Second)
	// A majority of voters, the leader among them if it votes, restart
	// at once with their StateDirs.
	victims := []string{"v1", "v2"}
	if first.ID == "v3" {
		victims = []string{"v3", "v1"}
	}
	for _, v := range victims {
		el.mu.Lock()
		cand := el.cands[v]
		el.mu.Unlock()
		cand.stop(t)
		c.restart(v)
		if err := c.lock(v).Ready(); err != nil {
			t.Fatalf("%s restarted with its StateDir is not ready at once: %v", v, err)
		}
		el.run(v)
	}
	all := []string{"v1", "v2", "v3", "c1"}
	cur := el.leaderAmong(all, testDurations.LeaseDuration+30*time.Second)
	// And a hand-over after it still goes up (the tracker checks every
	// term against the one before).
	el.mu.Lock()
	lead := el.cands[cur.ID]
	el.mu.Unlock()
	lead.stop(t)
	next := el.leaderAmong(others(all, cur.ID), testDurations.LeaseDuration+30*time.Second)
	t.Logf("terms: %d (%s) before the restart, %d (%s) after, %d (%s) after a hand-over", first.Term, first.ID, cur.Term, cur.ID, next.Term, next.ID)
	if next.Term <= cur.Term || cur.Term < first.Term {
		t.Errorf("terms %d, %d, %d: they must increase across the restart", first.Term, cur.Term, next.Term)
	}
}

func TestMajorityRestartWithoutStateDirReinitialisesAndTermsGoOn(t *testing.T) {
	reinit := testDurations.LeaseDuration + testDurations.RenewDeadline + time.Second
	c := newCluster(t, 3, false, func(o *Options) { o.ReinitializeAfter = reinit })
	for _, id := range []string{"c1", "c2"} {
		c.start(id, nil)
	}
	c.waitMembers(5)
	el := newElection(c, testDurations)
	el.run("c1")
	el.run("c2")
	first := el.leaderAmong([]string{"c1", "c2"}, 30*time.Second)
	restartedAt := time.Now()
	c.restart("v1")
	c.restart("v2")
	// The leader cannot renew without a majority: it steps down, and
	// nobody leads until the register is re-initialised.
	el.ended(indexOf(el.tr.Terms(), first), testDurations.RenewDeadline+10*time.Second)
	next := el.leaderAmong([]string{"c1", "c2"}, reinit+testDurations.LeaseDuration+30*time.Second)
	t.Logf("after the restart, %s leads term %d, %v later", next.ID, next.Term, next.Start.Sub(restartedAt).Round(time.Millisecond))
	if next.Start.Sub(restartedAt) < reinit {
		t.Errorf("a leader started %v after a majority restarted without state, before ReinitializeAfter (%v)", next.Start.Sub(restartedAt), reinit)
	}
	if next.Term <= first.Term {
		t.Errorf("term %d after the re-initialisation, after term %d: terms must go on from the highest seen", next.Term, first.Term)
	}
	var reinits float64
	for _, v := range c.voters {
		reinits += testutil.ToFloat64(c.lock(v).m.reinits)
	}
	if reinits == 0 {
		t.Error("no voter counted a re-initialisation")
	}
}
