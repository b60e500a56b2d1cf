package gossip

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/b3df926d/leaderelection/lock/locktest"
)

// slowDetector makes memberlist take at least 60 s to declare a crashed
// member dead (suspicion: SuspicionMult probe intervals, no confirmation
// shortening it), so that a crashed process stays alive in every view for
// the whole of a test.
func slowDetector(o *Options) {
	o.ReinitializeAfter = time.Second
	o.Memberlist = func(c *memberlist.Config) {
		c.SuspicionMult = 300
		c.SuspicionMaxTimeoutMult = 1
	}
}

// A voter that crashed (no leave) and restarted at a new address, as a
// Kubernetes pod does, is admitted at once: it hears pushes and votes
// within seconds, long before the others' failure detectors declare its
// old process dead (60 s here). Unloaded, it is admitted in about 0.1 s and
// votes in about 1 s; the bound is for a loaded machine, where lost gossip
// waits for memberlist's push-pull (every 5 s on the loopback preset). Its memberlist node name is its identity
// and its process incarnation, so memberlist does not refuse it as a
// second member with a taken name.
func TestVoterRestartedAtANewAddressVotesAndHearsPushesAtOnce(t *testing.T) {
	c := newCluster(t, 3, false, slowDetector)
	w := c.start("w", nil)
	c.waitMembers(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Create(ctx, locktest.NewRecord("A", 1)); err != nil {
		t.Fatal(err)
	}
	old := c.lock("v3").Addr()
	c.crash("v3")
	crashed := time.Now()
	v3 := c.start("v3", nil)
	if v3.Addr() == old {
		t.Fatalf("v3 restarted at its old address %s; the test needs a new one", old)
	}
	// w's membership maps v3 to the new process (memberlist gossips it
	// from the seeds v3 joined), its crashed predecessor still alive.
	const within = 20 * time.Second
	deadline := crashed.Add(within)
	for {
		w.tr.mu.Lock()
		ok := w.tr.incs["v3"] == v3.tr.inc && w.tr.alive["v3"] == v3.Addr()
		w.tr.mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("w did not admit the restarted v3 within %v of the crash", within)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	admitted := time.Since(crashed)
	c.waitReady("v3", 10*time.Second) // it recovers from v1 and v2
	ready := time.Since(crashed)

	// With w cut off from v1, a quorum needs the restarted v3's vote.
	c.net.Cut("w", "v1")
	c.net.Cut("v1", "w")
	uctx, ucancel := context.WithDeadline(ctx, deadline)
	defer ucancel()
	if err := w.Update(uctx, locktest.NewRecord("B", 2)); err != nil {
		t.Fatalf("with v1 cut off, w could not write through v2 and the restarted v3 (%v after the crash): %v", time.Since(crashed).Round(time.Millisecond), err)
	}
	voted := time.Since(crashed)

	// And w's push of the write reaches the new process, not the old
	// address.
	for {
		v3.mu.Lock()
		rec := v3.latestRec
		v3.mu.Unlock()
		if rec != nil && rec.HolderIdentity == "B" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the restarted v3 did not hear w's push of B within %v of the crash", within)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	t.Logf("after the crash: v3 admitted by w %v, ready %v, voted %v, heard the push %v",
		admitted.Round(time.Millisecond), ready.Round(time.Millisecond), voted.Round(time.Millisecond), time.Since(crashed).Round(time.Millisecond))
}
