package leaderelection

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	writegate "github.com/b3df926d/leaderelection/gate"
)

// gateTerm is the term g is open for, or 0 if it is closed.
func gateTerm(g *writegate.Gate) int64 {
	term, err := g.Check()
	if err != nil {
		return 0
	}
	return term
}

// The elector opens Config.Gate with the term when a leads, and closes it
// at the step-down (the store unreachable), before the leader's context
// ends and before b's term starts: a write in flight is cancelled, a
// write after the step-down is refused without being sent; and a's next
// term (Recampaign) opens it for that term, never for an old one.
func TestElectorOpensTheGateWithTheTermAndClosesItAtStepDown(t *testing.T) {
	el := newElection(t)
	ga := writegate.New()
	var gateAtStart atomic.Int64 // the gate's term when a's function last started
	fa := &faultLock{Interface: el.store.Lock("a")}
	a := el.add("a", func(c *Config) {
		c.Lock, c.Gate, c.Recampaign = fa, ga, true
		work := c.Callbacks.OnStartedLeading
		c.Callbacks.OnStartedLeading = func(ctx context.Context) {
			// Checked by the test once it knows the term is live: read
			// here after the test's end, a closed gate is no finding.
			gateAtStart.Store(gateTerm(ga))
			work(ctx)
		}
	})
	// The gate opens before the function starts, after the step-down
	// timer is armed (so that an open gate always has a timer to close
	// it): IsLeader may be true a moment before, so wait for the function.
	waitFor(t, "a's function to start", func() bool { return a.started.Load() == 1 })
	if got := gateAtStart.Load(); got != 1 {
		t.Fatalf("a's function started with the gate open for term %d, want 1", got)
	}
	if got := gateTerm(ga); got != 1 {
		t.Fatalf("a leads term 1 with its gate open for %d", got)
	}
	b := el.add("b", func(c *Config) {
		work := c.Callbacks.OnStartedLeading
		c.Callbacks.OnStartedLeading = func(ctx context.Context) {
			if term := gateTerm(ga); term != 0 {
				t.Errorf("b's term began with a's gate open for term %d", term)
			}
			work(ctx)
		}
	})
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })

	inFlight := make(chan error, 1)
	sent := make(chan struct{})
	go func() {
		inFlight <- ga.Do(context.Background(), func(ctx context.Context, term int64) error {
			close(sent)
			<-ctx.Done() // a write its store holds
			return ctx.Err()
		})
	}()
	<-sent
	waitFor(t, "a's function to start", func() bool { return a.started.Load() == 1 })
	lead := a.leadCtx.Load().(context.Context)
	fa.fail.Store(true)
	el.step(t, testRenew) // a's step-down timer fires
	waitFor(t, "a's leader context to end", func() bool { return lead.Err() != nil })
	if term := gateTerm(ga); term != 0 {
		t.Fatalf("a's leader context ended with its gate open for term %d", term)
	}
	if err := <-inFlight; !writegate.IsRefused(err) || !errors.Is(err, context.Canceled) {
		t.Fatalf("the write in flight at the step-down returned %v, want it cancelled by the gate", err)
	}
	called := false
	if err := ga.Do(context.Background(), func(context.Context, int64) error { called = true; return nil }); !writegate.IsRefused(err) || called {
		t.Fatalf("a write after the step-down: %v (sent: %v), want refused unsent", err, called)
	}

	el.stepUntilLeads(t, b, 2*testLease, "after a stepped down")
	fa.fail.Store(false)
	el.step(t, testRetry)
	if term := gateTerm(ga); term != 0 {
		t.Fatalf("a's gate is open for term %d while b leads term %d", term, b.e.Term())
	}
	b.cancel() // releases; a campaigns again and leads term 3
	el.stepUntilLeads(t, a, 2*testLease, "after b released")
	el.settle(t)
	waitFor(t, "a's function to start again", func() bool { return a.started.Load() == 2 })
	if got := gateAtStart.Load(); got != 3 {
		t.Fatalf("a's function started term 3 with the gate open for %d", got)
	}
	if got, want := gateTerm(ga), a.e.Term(); want != 3 || got != want {
		t.Fatalf("a leads term %d with its gate open for %d; want term 3", want, got)
	}
}

// A graceful stop closes the gate once the function is told to stop, and
// in any case before OnStoppedLeading and the release.
func TestGracefulStopClosesTheGateBeforeTheRelease(t *testing.T) {
	el := newElection(t)
	g := writegate.New()
	openAtStop := make(chan int64, 1)
	a := el.add("a", func(c *Config) {
		c.Gate = g
		c.Callbacks.OnStoppedLeading = func() { openAtStop <- gateTerm(g) }
	})
	waitFor(t, "a's function to start", func() bool { return a.started.Load() == 1 })
	if got := gateTerm(g); got != 1 {
		t.Fatalf("a leads term 1 with its gate open for %d", got)
	}
	a.cancel()
	if err := a.wait(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if term := <-openAtStop; term != 0 {
		t.Fatalf("the gate was open for term %d when OnStoppedLeading ran", term)
	}
	if rec := el.holder(t); rec.HolderIdentity != "" {
		t.Fatalf("not released: %+v", rec)
	}
}
