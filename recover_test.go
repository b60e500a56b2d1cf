package leaderelection

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	writegate "github.com/b3df926d/leaderelection/gate"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

const testRecoverDeadline = 10 * testLease

// recovering starts a, a leader with Recover and a gate on a lock the test
// can make fail, and b, a follower on a lock of its own the test can make
// fail (bmod adjusts b's config), and waits for b to see a lead.
func (el *election) recovering(t *testing.T, bmod func(*Config)) (a, b *candidate, fa, fb *faultLock, ga *writegate.Gate) {
	t.Helper()
	a, fa, ga = el.recoveringLeader(t)
	fb = &faultLock{Interface: el.store.Lock("b")}
	b = el.add("b", func(c *Config) {
		c.Lock = fb
		if bmod != nil {
			bmod(c)
		}
	})
	waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
	return a, b, fa, fb, ga
}

// recoveringLeader starts a, a leader with Recover and a gate on a lock
// the test can make fail (mods adjust its config further), and waits for
// its function to start.
func (el *election) recoveringLeader(t *testing.T, mods ...func(*Config)) (a *candidate, fa *faultLock, ga *writegate.Gate) {
	t.Helper()
	ga = writegate.New()
	fa = &faultLock{Interface: el.store.Lock("a")}
	a = el.add("a", func(c *Config) {
		c.Lock, c.Gate, c.Recover, c.RecoverDeadline = fa, ga, true, testRecoverDeadline
		for _, mod := range mods {
			mod(c)
		}
	})
	waitFor(t, "a's function to start", func() bool { return a.started.Load() == 1 })
	return a, fa, ga
}

// wantRecovering checks that a has stopped leading, closed its gate, and
// kept its function running, in term 1.
func wantRecovering(t *testing.T, a *candidate, ga *writegate.Gate, lead context.Context) {
	t.Helper()
	if a.e.IsLeader() || !a.e.Status().Recovering {
		t.Fatalf("a past its renew deadline: leading %v, recovering %v; want recovering, not leading", a.e.IsLeader(), a.e.Status().Recovering)
	}
	if term := gateTerm(ga); term != 0 {
		t.Fatalf("a recovers with its gate open for term %d", term)
	}
	if lead.Err() != nil || a.started.Load() != 1 {
		t.Fatalf("a's function was cancelled (%v) or restarted (%d starts) while recovering", lead.Err(), a.started.Load())
	}
}

// The store unreachable from every candidate, for less than a lease or
// for several: the leader stops leading at its renew deadline (gate
// closed) but its function keeps running, and the first renewal after
// the outage (a compare-and-swap on the version it last wrote: nobody
// wrote since) makes it lead again in the same term, gate open, its
// function never restarted. The follower, back later, sees the renewed
// lease and does not take over.
func TestRecoverLeadsAgainInTheSameTermWhenNobodyTookOver(t *testing.T) {
	for _, tc := range []struct {
		name   string
		outage time.Duration
	}{
		{"outage shorter than the lease", testLease - testRetry/2},
		{"outage longer than the lease", 3 * testLease},
	} {
		t.Run(tc.name, func(t *testing.T) {
			el := newElection(t)
			a, b, fa, fb, ga := el.recovering(t, nil)
			lead := a.leadCtx.Load().(context.Context)
			began := el.clk.Now()
			fa.fail.Store(true)
			fb.fail.Store(true)
			el.step(t, testRenew) // a's renew deadline
			el.settle(t)
			wantRecovering(t, a, ga, lead)
			for el.clk.Since(began) < tc.outage {
				el.step(t, testRetry/4)
			}
			el.settle(t)
			wantRecovering(t, a, ga, lead)

			fa.fail.Store(false)
			el.stepUntilLeads(t, a, 2*testRetry, "after the store came back")
			el.settle(t)
			if term := gateTerm(ga); term != 1 || a.e.Term() != 1 {
				t.Fatalf("a leads again in term %d with its gate open for %d; want 1 and 1", a.e.Term(), term)
			}
			if lead.Err() != nil || a.started.Load() != 1 {
				t.Fatalf("a's function was cancelled (%v) or restarted (%d starts)", lead.Err(), a.started.Load())
			}
			fb.fail.Store(false)
			el.stepFor(t, 2*testLease)
			if !a.e.IsLeader() || b.e.IsLeader() || a.e.Status().Recovering {
				t.Fatalf("after the outage: a leads %v (recovering %v), b leads %v; want a alone", a.e.IsLeader(), a.e.Status().Recovering, b.e.IsLeader())
			}
			el.wantTerms(t, a, []int64{1}, []string{"a"}, "want term 1 alone")
		})
	}
}

// The store unreachable from the leader only, longer than the lease: the
// follower takes over (term 2) while the leader recovers, its gate closed
// and its writes refused; when the leader reaches the store again its
// renewal loses the compare-and-swap, its function's context is
// cancelled, its gate never reopens, and Run returns ErrLeaseLost.
func TestRecoverEndsTheTermWhenAnotherCandidateTookOver(t *testing.T) {
	el := newElection(t)
	var ga *writegate.Gate
	var aRunning atomic.Bool
	var a *candidate
	a, b, fa, _, ga := el.recovering(t, func(c *Config) {
		work := c.Callbacks.OnStartedLeading
		c.Callbacks.OnStartedLeading = func(ctx context.Context) {
			if term := gateTerm(ga); term != 0 {
				t.Errorf("b's term began with a's gate open for term %d", term)
			}
			aRunning.Store(a.leadCtx.Load().(context.Context).Err() == nil)
			work(ctx)
		}
	})
	lead := a.leadCtx.Load().(context.Context)
	fa.fail.Store(true)
	el.step(t, testRenew)
	el.settle(t)
	wantRecovering(t, a, ga, lead)
	called := false
	if err := ga.Do(context.Background(), func(context.Context, int64) error { called = true; return nil }); !writegate.IsRefused(err) || called {
		t.Fatalf("a write while recovering: %v (sent: %v), want refused unsent", err, called)
	}
	el.stepUntilLeads(t, b, 2*testLease, "while a could not reach the store")
	el.wantTerms(t, b, []int64{1, 2}, []string{"a", "b"}, "want b to take term 2")
	if !aRunning.Load() {
		t.Fatal("a's function was cancelled before b took over: recovery keeps it running until a learns of the takeover")
	}

	fa.fail.Store(false)
	for lead.Err() == nil && !a.exited.Load() {
		el.step(t, testRetry/4)
		if term := gateTerm(ga); term != 0 {
			t.Fatalf("a's gate reopened for term %d while b leads term 2", term)
		}
	}
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "another candidate holds the lock") {
		t.Fatalf("a's Run = %v, want ErrLeaseLost: another candidate holds the lock", err)
	}
	if lead.Err() == nil || a.e.IsLeader() || gateTerm(ga) != 0 {
		t.Fatalf("after the takeover a's function context is %v, leading %v, gate term %d; want cancelled, not leading, closed", lead.Err(), a.e.IsLeader(), gateTerm(ga))
	}
}

// stepFor moves the clock d a quarter RetryPeriod at a time, and settles.
func (el *election) stepFor(t *testing.T, d time.Duration) {
	t.Helper()
	for range d / (testRetry / 4) {
		el.step(t, testRetry/4)
	}
	el.settle(t)
}

// withRecover gives a follower Recover, as replicas sharing flags have it.
func withRecover(c *Config) {
	c.Gate, c.Recover, c.RecoverDeadline = writegate.New(), true, testRecoverDeadline
}

// firstReadAfter steps the clock a quarter RetryPeriod at a time until
// c's last store call succeeded, and returns the time of that read.
func (el *election) firstReadAfter(t *testing.T, c *candidate, after string) time.Time {
	t.Helper()
	for start := el.clk.Now(); c.e.Status().StoreError != ""; {
		if el.clk.Since(start) > 3*testRetry {
			t.Fatalf("%s read nothing within %v %s", c.id, 3*testRetry, after)
		}
		el.step(t, testRetry/4)
		el.settle(t)
	}
	return el.clk.Now()
}

// Three replicas with Recover, the store unreachable from all of them for
// longer than the lease. At its return the followers' first reads find
// the record unchanged and long expired; but a follower whose reads
// failed measures the lease from its first read that succeeds, so the
// leader, whose renewal comes up to a RetryPeriod after the store's
// return (here: after both followers have read, the worst order),
// renews in its term, and no follower ever leads.
func TestRecoverFollowersLeaveTheLeaderItsTermAfterAnOutage(t *testing.T) {
	el := newElection(t)
	a, fa, ga := el.recoveringLeader(t)
	lead := a.leadCtx.Load().(context.Context)
	followers := []*candidate{el.add("b", withRecover), el.add("c", withRecover)}
	for _, f := range followers {
		waitFor(t, f.id+" to see a", func() bool { return f.e.GetLeader() == "a" })
	}
	noFollowerLeads := func(when string) {
		t.Helper()
		for _, f := range followers {
			if f.e.IsLeader() {
				t.Fatalf("%s took over %s: a recovering leader is left its term after an outage", f.id, when)
			}
		}
	}

	el.store.SetFault(func(string) error { return errInjected })
	el.stepFor(t, 3*testLease)
	wantRecovering(t, a, ga, lead)
	for _, f := range followers {
		if f.e.Status().StoreError == "" {
			t.Fatalf("%s's last read succeeded during the outage", f.id)
		}
	}

	fa.fail.Store(true) // a renews after the followers have read
	el.store.SetFault(nil)
	for _, f := range followers {
		el.firstReadAfter(t, f, "after the store came back")
		noFollowerLeads("at its first read after the outage")
	}
	fa.fail.Store(false)
	el.stepUntilLeads(t, a, 2*testRetry, "after the store came back")
	noFollowerLeads("before a renewed")
	for range 2 * testLease / (testRetry / 4) {
		el.step(t, testRetry/4)
		noFollowerLeads("after a renewed")
	}
	el.settle(t)
	if term := gateTerm(ga); term != 1 || a.e.Term() != 1 || !a.e.IsLeader() {
		t.Fatalf("a leads %v in term %d with its gate open for %d; want leading in 1 and 1", a.e.IsLeader(), a.e.Term(), term)
	}
	if lead.Err() != nil || a.started.Load() != 1 {
		t.Fatalf("a's function was cancelled (%v) or restarted (%d starts)", lead.Err(), a.started.Load())
	}
	el.wantTerms(t, a, []int64{1}, []string{"a"}, "want term 1 alone")
}

// leaderKeepsItsTerm checks, the store back for follower b first (after
// an outage), that b's first read does not take over, and that then a,
// recovering, leads again in term 1 once fa works, its function (whose
// context is lead) never restarted.
func (el *election) leaderKeepsItsTerm(t *testing.T, a, b *candidate, fa *faultLock, lead context.Context, after string) {
	t.Helper()
	el.firstReadAfter(t, b, after)
	if b.e.IsLeader() {
		t.Fatalf("b took over at its first read %s: a recovering leader is left its term", after)
	}
	fa.fail.Store(false)
	el.stepUntilLeads(t, a, 2*testRetry, after)
	if a.e.Term() != 1 || lead.Err() != nil || a.started.Load() != 1 {
		t.Fatalf("a leads in term %d, its function cancelled (%v) or restarted (%d starts); want term 1, one start", a.e.Term(), lead.Err(), a.started.Load())
	}
	el.wantTerms(t, a, []int64{1}, []string{"a"}, "want term 1 alone")
}

// Two outages back to back, as the fault campaign makes them: after the
// first, the leader renews before the follower reads again, so the
// follower's first read after it finds a changed record (the renewal);
// the second outage begins before the next renewal. That record, first
// seen after failed reads, has not used up its once: after the second
// outage the follower, reading first again, still leaves the leader its
// term.
func TestRecoverFollowerLeavesTheLeaderItsTermAfterOutagesBackToBack(t *testing.T) {
	el := newElection(t)
	a, b, fa, fb, ga := el.recovering(t, withRecover)
	lead := a.leadCtx.Load().(context.Context)
	fa.fail.Store(true)
	fb.fail.Store(true)
	el.stepFor(t, 3*testLease)
	wantRecovering(t, a, ga, lead)

	fa.fail.Store(false)
	el.stepUntilLeads(t, a, 2*testRetry, "after the first outage")
	fa.fail.Store(true) // the second outage, before a's next renewal
	fb.fail.Store(false)
	el.firstReadAfter(t, b, "after the first outage") // a's renewal: a changed record
	fb.fail.Store(true)
	el.stepFor(t, 3*testLease)
	wantRecovering(t, a, ga, lead)

	fb.fail.Store(false) // b reads first
	el.leaderKeepsItsTerm(t, a, b, fa, lead, "after the second outage")
}

// A follower on a caching lock (gossip): during the outage the read at
// its lease's expiry is served from a cache, and only its takeover's
// write fails; its next read comes after the store's return. That failed
// write counts as not seeing the store: the follower leaves the
// recovering leader its term.
func TestRecoverFollowerOnACachingLockLeavesTheLeaderItsTerm(t *testing.T) {
	el := newElection(t)
	a, b, fa, fb, ga := el.recovering(t, withRecover)
	fb.failUpdate.Store(true) // b's reads still served
	fa.fail.Store(true)
	lead := a.leadCtx.Load().(context.Context)
	for fb.attempts.Load() == 0 {
		if el.clk.Since(a.e.Status().LastRenew) > 2*testLease {
			t.Fatal("b did not try to take over during the outage")
		}
		el.step(t, testRetry/4)
		el.settle(t)
	}
	wantRecovering(t, a, ga, lead)

	fb.failUpdate.Store(false) // back, for b first
	el.leaderKeepsItsTerm(t, a, b, fa, lead, "after the outage")
}

// What that costs, and its bounds. A leader that never comes back is
// replaced one LeaseDuration after a follower with Recover first reads
// the store after the outage, not at once, also when the record it reads
// is a renewal it missed that a lock.Aged dates back to before the
// outage; a second outage before then does not give the same record
// another lease (once per record: a store that keeps failing cannot put a
// takeover off for ever); a follower without Recover takes over at its
// first read, as before.
func TestRecoverFollowerWaitsOneLeaseOncePerRecordAfterAnOutage(t *testing.T) {
	for _, tc := range []struct {
		name          string
		recover       bool
		aged          bool // b misses a's last renewal, which its lock dates back to a's cut
		secondOutage  bool
		takesOverLate bool // one LeaseDuration after its first read, not at it
	}{
		{"follower without Recover", false, false, false, false},
		{"follower with Recover", true, false, false, true},
		{"follower with Recover, a renewal it missed dated back by lock.Aged", true, true, false, true},
		{"follower with Recover, a second outage", true, false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			el := newElection(t)
			var aCut atomic.Pointer[time.Time] // a's last renewal began before
			bmod := func(c *Config) {
				if tc.recover {
					withRecover(c)
				}
				if tc.aged {
					c.Lock.(*faultLock).age = func([]byte) (time.Duration, bool) {
						if at := aCut.Load(); at != nil {
							return el.clk.Since(*at), true
						}
						return 0, false
					}
				}
			}
			a, b, fa, fb, ga := el.recovering(t, bmod)
			lead := a.leadCtx.Load().(context.Context)
			fb.fail.Store(true)
			if tc.aged {
				el.step(t, testRetry) // a renews once more, unseen by b
			}
			el.settle(t)
			now := el.clk.Now()
			aCut.Store(&now)
			fa.fail.Store(true) // for good: a never renews again
			el.stepFor(t, 3*testLease)
			wantRecovering(t, a, ga, lead)
			fb.fail.Store(false)
			read := el.firstReadAfter(t, b, "after the outage")
			if tc.secondOutage {
				el.setTime(t, read.Add(testLease/2))
				el.settle(t)
				if b.e.IsLeader() {
					t.Fatalf("b took over %v after its first read, want not before a lease", testLease/2)
				}
				fb.fail.Store(true)
				el.stepFor(t, 2*testLease)
				fb.fail.Store(false)
				read = el.firstReadAfter(t, b, "after the second outage")
			}
			if tc.takesOverLate {
				el.takesOverAt(t, b, read.Add(testLease), "one lease after its first read after the outage")
			} else if !b.e.IsLeader() {
				t.Fatalf("b does not lead at its first read after the outage (%v); want a takeover at once", read)
			}
			el.wantTerms(t, b, []int64{1, 2}, []string{"a", "b"}, "want b to take term 2")
		})
	}
}

// The record deleted during an outage longer than the lease: the
// recovering leader's first renewal finds it gone and ends the term (its
// function cancelled); too late to put its term back (a lease has passed
// since its last renewal), it leaves the lock empty, and the follower,
// which saw term 1, continues the count from it.
func TestRecoverEndsTheTermWhenTheRecordWasDeletedMeanwhile(t *testing.T) {
	el := newElection(t)
	a, b, fa, fb, ga := el.recovering(t, nil)
	lead := a.leadCtx.Load().(context.Context)
	fa.fail.Store(true)
	fb.fail.Store(true)
	el.step(t, testRenew)
	el.settle(t)
	wantRecovering(t, a, ga, lead)
	el.store.Delete()
	el.stepFor(t, 2*testLease)
	wantRecovering(t, a, ga, lead)

	fa.fail.Store(false)
	for lead.Err() == nil && !a.exited.Load() {
		el.step(t, testRetry/4)
	}
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "deleted") {
		t.Fatalf("a's Run = %v, want ErrLeaseLost: the record was deleted", err)
	}
	fb.fail.Store(false)
	el.stepUntilLeads(t, b, 3*testLease, "after a left")
	el.wantTerms(t, b, []int64{1, 2}, []string{"a", "b"}, "want b to continue from a's term")
}

// A recovery that lasts RecoverDeadline since the last good renewal's
// start ends the term then, to the instant: the function's context is
// cancelled and Run returns ErrLeaseLost naming RecoverDeadline.
func TestRecoverGivesUpAtTheRecoverDeadline(t *testing.T) {
	el := newElection(t)
	a, fa, g := el.recoveringLeader(t)
	lead := a.leadCtx.Load().(context.Context)
	acquired := el.clk.Now() // the last good renewal's start
	fa.fail.Store(true)
	el.setTime(t, acquired.Add(testRecoverDeadline-time.Millisecond))
	el.settle(t)
	wantRecovering(t, a, g, lead)
	el.setTime(t, acquired.Add(testRecoverDeadline))
	waitFor(t, "a's function to be cancelled at the recover deadline", func() bool { return lead.Err() != nil })
	if err := a.wait(t); !errors.Is(err, ErrLeaseLost) || !strings.Contains(err.Error(), "RecoverDeadline") {
		t.Fatalf("Run = %v, want ErrLeaseLost naming RecoverDeadline", err)
	}
}

// Recover with Recampaign: a recovering term that is lost (another
// candidate took over, or RecoverDeadline passed) ends as a lost lease
// does with Recampaign alone: the function's context is cancelled, Run
// goes on, and the candidate campaigns again. Its gate stays closed while
// it does not lead, and opens only for its next term, in which its
// function starts again.
func TestRecoverWithRecampaignCampaignsAgainAfterALostTerm(t *testing.T) {
	for _, tc := range []string{"another candidate took over", "RecoverDeadline passed"} {
		t.Run(tc, func(t *testing.T) {
			el := newElection(t)
			a, fa, ga := el.recoveringLeader(t, func(c *Config) { c.Recampaign = true })
			acquired := el.clk.Now() // the last good renewal's start
			var b *candidate
			if tc == "another candidate took over" {
				b = el.add("b", nil)
				waitFor(t, "b to see a", func() bool { return b.e.GetLeader() == "a" })
			}
			lead := a.leadCtx.Load().(context.Context)
			fa.fail.Store(true)
			el.step(t, testRenew)
			el.settle(t)
			wantRecovering(t, a, ga, lead)
			want := int64(2) // a's next term
			if b != nil {
				el.stepUntilLeads(t, b, 2*testLease, "while a could not reach the store")
				el.wantTerms(t, b, []int64{1, 2}, []string{"a", "b"}, "want b to take term 2")
				fa.fail.Store(false)
				for lead.Err() == nil {
					if el.clk.Since(acquired) > testRecoverDeadline {
						t.Fatal("a's function still runs at its RecoverDeadline: it never learnt of the takeover")
					}
					el.step(t, testRetry/4)
					if term := gateTerm(ga); term != 0 {
						t.Fatalf("a's gate reopened for term %d while b leads term 2", term)
					}
				}
				el.settle(t)
				if a.e.IsLeader() || a.e.GetLeader() != "b" {
					t.Fatalf("a after learning of the takeover: leading %v, leader %q; want a follower of b", a.e.IsLeader(), a.e.GetLeader())
				}
				b.cancel() // b releases (ReleaseOnCancel): a may take term 3
				want = 3
			} else {
				el.setTime(t, acquired.Add(testRecoverDeadline))
				waitFor(t, "a's function to be cancelled at the recover deadline", func() bool { return lead.Err() != nil })
				fa.fail.Store(false)
			}
			if a.exited.Load() {
				t.Fatalf("a's Run returned %v after its lost term; Recampaign campaigns again", a.wait(t))
			}
			for a.started.Load() < 2 {
				el.step(t, testRetry/4)
				if term := gateTerm(ga); term != 0 && term != want {
					t.Fatalf("a's gate opened for term %d; want it closed until a leads term %d", term, want)
				}
				if el.clk.Since(acquired) > testRecoverDeadline+5*testLease {
					t.Fatalf("a did not lead again within %v", 5*testLease)
				}
			}
			el.settle(t)
			now := a.leadCtx.Load().(context.Context)
			if term, _ := TermFrom(now); term != want || gateTerm(ga) != want {
				t.Fatalf("a leads again in term %d with its gate open for %d; want term %d for both", term, gateTerm(ga), want)
			}
		})
	}
}

func TestRecoverBadInputNamesTheFieldAndFlag(t *testing.T) {
	base := func() Option {
		return Option{
			Lock: locktest.NewMemoryStore("r").Lock("a"), Port: NoHealthServer, Run: func(context.Context) {},
			Recover: true, Gate: writegate.New(),
		}
	}
	if err := base().Validate(); err != nil {
		t.Fatalf("valid options rejected: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Option)
		want string
	}{
		{"no gate", func(o *Option) { o.Gate = nil }, "Option.Recover (--leader-elect-recover) needs Option.Gate"},
		{"deadline below the renew deadline", func(o *Option) { o.RecoverDeadline = 5 * time.Second },
			"RecoverDeadline (5s, --leader-elect-recover-deadline) must be greater than RenewDeadline (10s, --leader-elect-renew-deadline)"},
		{"deadline equal to the renew deadline", func(o *Option) { o.RecoverDeadline = DefaultRenewDeadline }, "must be greater than RenewDeadline"},
		{"negative deadline", func(o *Option) { o.RecoverDeadline = -time.Second }, "RecoverDeadline (-1s, --leader-elect-recover-deadline) must not be negative"},
		{"deadline without recover", func(o *Option) { o.Recover, o.RecoverDeadline = false, time.Minute }, "is set but Recover (--leader-elect-recover) is not"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := base()
			tc.mod(&o)
			if err := o.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want %q", err, tc.want)
			}
		})
	}
	c := Config{
		Lock: locktest.NewMemoryStore("r").Lock("a"), LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
		Callbacks: Callbacks{OnStartedLeading: func(context.Context) {}}, Recover: true, RecoverDeadline: time.Second,
	}
	err := c.Validate()
	for _, want := range []string{"RecoverDeadline (1s) must be greater than RenewDeadline (2s)", "Config.Recover needs Config.Gate"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Config.Validate() = %v, want %q", err, want)
		}
	}
	if _, err := NewElector(c); err == nil {
		t.Error("NewElector accepted Recover without a gate")
	}
}
