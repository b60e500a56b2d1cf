package gossip

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/lock/locktest"
)

// A second live process with a voter's identity (a twin: a
// misconfiguration) must never answer as that voter's acceptor while the
// first lives, nor the first once it knows of the twin: two acceptors for
// one voter let two proposers each count it in quorums that do not
// otherwise intersect, and two values be chosen. Writes go on through the
// other voters; once the first process is gone (its port refuses
// connections), the twin recovers and votes.
func TestTwinVoterNeverAnswersWhileTheOriginalLives(t *testing.T) {
	c, w, ctx := threeVotersAnd(t, "w")
	if err := w.Create(ctx, locktest.NewRecord("A", 1)); err != nil {
		t.Fatal(err)
	}
	first := c.lock("v2")
	var firstAnswers, twinAnswers atomic.Int64
	var known atomic.Bool // the first process knows of the twin
	countFirst := func(kind, string) {
		if known.Load() {
			firstAnswers.Add(1)
		}
	}
	first.replied.Store(&countFirst)
	countTwin := func(kind, string) { twinAnswers.Add(1) }

	tr, err := c.net.Transport("v2-twin")
	if err != nil {
		t.Fatal(err)
	}
	o := c.options("v2")
	o.Transport, o.Join, o.ReinitializeAfter = tr, c.seedsExcept(""), time.Second
	twin, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	defer twin.Close()
	twin.replied.Store(&countTwin)

	// From the moment the first process knows of the twin, neither
	// answers as v2.
	for deadline := time.Now().Add(20 * time.Second); ; {
		first.n.mu.Lock()
		_, ok := first.n.procs[fmt.Sprintf("v2#%016x", twin.n.inc)]
		first.n.mu.Unlock()
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first v2 never learned of the twin")
		}
		time.Sleep(10 * time.Millisecond) // polling memberlist's view
	}
	known.Store(true)
	// Writes for a while: each asks v2 (both processes: w sends to the one
	// started last and to the address it last heard v2 at).
	wrote := 0
	for i := 2; i < 12; i++ {
		wctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		began := time.Now()
		if err := w.Update(wctx, locktest.NewRecord(fmt.Sprintf("R%d", i), i)); err != nil {
			t.Logf("write %d after %v: %v", i, time.Since(began).Round(time.Millisecond), err)
		} else {
			wrote++
		}
		cancel()
	}
	if wrote == 0 {
		t.Error("no write went through v1 and v3 while v2 was silent")
	}
	if n := twinAnswers.Load(); n != 0 {
		t.Errorf("the twin answered %d requests as v2's acceptor while the first v2 lived", n)
	}
	if n := firstAnswers.Load(); n != 0 {
		t.Errorf("the first v2 answered %d requests as v2's acceptor after it learned of the twin", n)
	}
	if twin.Ready() == nil || first.Ready() == nil {
		t.Errorf("a process of a duplicated identity reports ready: first %v, twin %v", first.Ready(), twin.Ready())
	}

	// The first process crashes: its port refuses, and the twin votes.
	c.crash("v2")
	crashed := time.Now()
	for twin.Ready() != nil {
		if time.Since(crashed) > 20*time.Second {
			t.Fatalf("the twin did not recover within 20 s of the first v2's crash: %v", twin.Ready())
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	ready := time.Since(crashed)
	c.net.Cut("w", "v1")
	c.net.Cut("v1", "w")
	zctx, zcancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer zcancel()
	if err := w.Update(zctx, locktest.NewRecord("Z", 99)); err != nil {
		t.Fatalf("with v1 cut off, w could not write through v3 and the twin: %v", err)
	}
	if twinAnswers.Load() == 0 {
		t.Error("the write went through without the twin's vote")
	}
	t.Logf("%d of 10 writes while both lived; after the first v2's crash the twin was ready in %v and voted in %v",
		wrote, ready.Round(time.Millisecond), time.Since(crashed).Round(time.Millisecond))
}
