package electiontest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection"
	writegate "github.com/b3df926d/leaderelection/gate"
	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// gated is a candidate of a recovery scenario: Recover on, a write gate of
// its own, and a function that counts its starts.
type gated struct {
	gate   *writegate.Gate
	starts atomic.Int32
}

// recoveringElection returns an election whose candidates run with
// Recover and a gate each (recoverDeadline, if set, is their
// RecoverDeadline). With Recover the function's context says nothing about
// leading while the store is out; the gate does. So each candidate's
// function records in the tracker the spans in which its gate is open, as
// a controller writing through it would see them: the tracker then checks
// that no two gates were ever open at once and that a gate reopens only in
// the term its holder led last.
func recoveringElection(t *testing.T, h Harness, o Options, recoverDeadline time.Duration) (*Election, func(id string) *gated) {
	var mu sync.Mutex
	cands := map[string]*gated{}
	var el *Election
	el = newElection(t, h, o, func(c *leaderelection.Config) {
		id := c.Lock.Identity()
		g := &gated{gate: writegate.New()}
		mu.Lock()
		cands[id] = g
		mu.Unlock()
		c.Recover, c.RecoverDeadline, c.Gate = true, recoverDeadline, g.gate
		c.Callbacks.OnStartedLeading = func(ctx context.Context) {
			g.starts.Add(1)
			var last int64 // the term of this function's last open span
			for ctx.Err() == nil {
				err := g.gate.Do(ctx, func(wctx context.Context, term int64) error {
					i := 0
					if term == last {
						i = el.Tracker.Reopen(id, term)
					} else {
						i = el.Tracker.Begin(id, term)
					}
					last = term
					<-wctx.Done()
					el.Tracker.End(i)
					return nil
				})
				if errors.Is(err, writegate.ErrClosed) {
					// A controller's retry: try again shortly.
					select {
					case <-ctx.Done():
					case <-time.After(5 * time.Millisecond):
					}
				}
			}
		}
	})
	return el, func(id string) *gated {
		mu.Lock()
		defer mu.Unlock()
		return cands[id]
	}
}

// recoverRidesOutAStoreOutage: with Recover, the store stops answering
// every candidate. The leader's gate closes at its renew deadline, its
// function keeps running, and once the store answers again it leads again
// in the same term, gate reopened, function never restarted; nobody else
// leads meanwhile. The lease is twice the scenario's, so that a slow first
// renewal after the outage still comes well before a follower, counting
// the lease from its own first read after the outage, may take over.
//
// Two outages: one shorter than the lease, the store hanging (Blocker),
// and one longer than the lease, the store refusing every call (Refuser;
// skipped without). Through a longer outage a hung store would not do:
// a follower whose view of the lease runs out during it may try to take
// over (a caching lock serves its read), and its write, given up on but
// held by the store, lands when the store answers again: a new term,
// safe, but the leader's lost (docs/elector.md, "A follower after an
// outage"). A refused call never lands later.
func recoverRidesOutAStoreOutage(t *testing.T, h Harness, b locktest.Blocker, o Options) {
	o.LeaseDuration *= 2
	for _, tc := range []struct {
		name   string
		longer time.Duration // the outage lasts this long after the gate closed
	}{
		{"shorter than the lease", 0},
		{"longer than the lease", o.LeaseDuration + o.RetryPeriod},
	} {
		t.Run(tc.name, func(t *testing.T) {
			outage := b.Block
			if tc.longer > 0 {
				r, ok := h.(locktest.Refuser)
				if !ok {
					t.Skip("the harness is not a locktest.Refuser")
				}
				outage = r.Refuse
			}
			el, cand := recoveringElection(t, h, o, 0)
			for _, id := range []string{"a", "b", "c"} {
				el.Start(id)
			}
			first := el.leaderAfter(0, "a leader")[0]
			if !el.waitObserved(0) {
				t.Fatalf("%s's term ended before the others saw it", first.ID)
			}
			n := len(el.Tracker.Terms()) // a slow renewal may have closed and reopened the gate
			leader := el.ByID(first.ID)
			began := time.Now()
			end := outage(t, el.name)
			defer end()
			el.Tracker.WaitFor(t, "the leader's gate to close", o.Wait, func(ts []Term) bool { return !ts[n-1].End.IsZero() })
			poll.Until(t, first.ID+" to recover", o.Wait, func() bool { return leader.Elector.Status().Recovering })
			if tc.longer > 0 {
				time.Sleep(tc.longer) // the outage's length, not synchronisation
			}
			back := time.Now()
			end()
			ts := el.leaderAfter(n, "a leader after the outage")
			again := ts[n]
			if again.ID != first.ID || again.Term != first.Term || !again.Reopened {
				t.Fatalf("after the outage %s led term %d (reopened %v); want %s again in term %d: terms %+v",
					again.ID, again.Term, again.Reopened, first.ID, first.Term, ts)
			}
			if n := cand(first.ID).starts.Load(); n != 1 {
				t.Errorf("%s's function started %d times; want once: a recovered term keeps it running", first.ID, n)
			}
			if leader.exited.Load() {
				t.Errorf("%s's Run returned: %v", first.ID, leader.Wait(t, time.Second))
			}
			el.Tracker.Check(t)
			t.Logf("%s's gate closed %v after the outage began; it led term %d again %v after the store answered",
				first.ID, ts[n-1].End.Sub(began).Round(time.Millisecond), again.Term, again.Start.Sub(back).Round(time.Millisecond))
		})
	}
}

// recoverEndsTheTermAfterATakeover: with Recover, the leader alone is cut
// off from the store. Its gate closes at its renew deadline, and another
// candidate takes over once the lease has expired; when the cut-off leader
// reaches the store again, its renewal finds the other holder and its term
// ends as a lost lease: its function's context is cancelled and Run
// returns ErrLeaseLost. Its RecoverDeadline is far beyond the scenario, so
// that only the takeover can have ended the term. The tracker checks that
// the two gates were never open at once.
func recoverEndsTheTermAfterATakeover(t *testing.T, h Harness, cut locktest.Cutter, o Options) {
	el, cand := recoveringElection(t, h, o, 100*o.LeaseDuration)
	for _, id := range []string{"a", "b", "c"} {
		el.Start(id)
	}
	first := el.leaderAfter(0, "a leader")[0]
	if !el.waitObserved(0) {
		t.Fatalf("%s's term ended before the others saw it", first.ID)
	}
	old := el.ByID(first.ID)
	resume := cut.CutOff(t, old.Lock)
	defer resume()
	ts := el.leaderAfter(1, "another candidate to take over")
	next := ts[1]
	if next.ID == first.ID || next.Term <= first.Term {
		t.Fatalf("while %s was cut off, %s led term %d; want another candidate with a term above %d: %+v", first.ID, next.ID, next.Term, first.Term, ts)
	}
	if old.exited.Load() {
		t.Fatalf("%s's Run returned while it was cut off, before it could see the takeover: %v", first.ID, old.Wait(t, time.Second))
	}
	back := time.Now()
	resume()
	if err := old.Wait(t, o.Wait); !errors.Is(err, leaderelection.ErrLeaseLost) {
		t.Errorf("%s, whose term another candidate took over: Run returned %v, want ErrLeaseLost", first.ID, err)
	}
	if n := cand(first.ID).starts.Load(); n != 1 {
		t.Errorf("%s's function started %d times; want once", first.ID, n)
	}
	el.Tracker.Check(t)
	t.Logf("%s's gate closed %v before %s's opened in term %d; %s's Run ended %v after it could reach the store",
		first.ID, next.Start.Sub(ts[0].End).Round(time.Millisecond), next.ID, next.Term, first.ID, time.Since(back).Round(time.Millisecond))
}
