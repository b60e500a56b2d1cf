package electiontest

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// Candidate is one elector of a scenario, on a lock of its own.
type Candidate struct {
	ID      string
	Lock    lock.Interface
	Elector *leaderelection.Elector
	cancel  context.CancelFunc
	done    chan error
	result  error
	ended   bool
	exited  atomic.Bool // Run returned
}

// Election is a set of candidates on one record whose leader functions
// report to a Tracker.
type Election struct {
	t       *testing.T
	h       Harness
	o       Options
	name    string
	Tracker *Tracker
	cands   []*Candidate
	cfg     func(*leaderelection.Config)
}

// NewElection returns an election on a fresh record of h, released (no
// holder, term 0), for a backend's scenarios of its own; the Tracker is
// checked when t ends. configure, if set, adjusts every candidate's
// configuration.
func NewElection(t *testing.T, h Harness, opts Options, configure func(*leaderelection.Config)) *Election {
	return newElection(t, h, opts.withDefaults(), configure)
}

// newElection is NewElection with o defaulted.
func newElection(t *testing.T, h Harness, o Options, configure func(*leaderelection.Config)) *Election {
	el := &Election{t: t, h: h, o: o, name: locktest.Name(t), Tracker: NewTracker(), cfg: configure}
	// Registered first, so that it runs after every candidate has stopped.
	t.Cleanup(func() { el.Tracker.Check(t) })
	el.seedReleased()
	return el
}

// Name is the name of the election's record.
func (el *Election) Name() string { return el.name }

// seedReleased creates the record as a graceful stop leaves it (no holder,
// term 0), so that the first candidate takes it at once. On a store that
// cannot prove a lock new, a candidate that finds no record leads only once
// its claim has stood RenewDeadline + max(LeaseDuration, 2.2 ×
// RetryPeriod) plus three of its reads (it may have just been deleted
// under a leader): at git's timings under load that came close to the
// scenarios' Wait, and none of them is about a first start.
func (el *Election) seedReleased() {
	el.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), el.o.Wait)
	defer cancel()
	now := metav1.Now()
	rec := lock.Record{LeaseDurationSeconds: 1, AcquireTime: now, RenewTime: now}
	if err := el.h.NewLock(el.t, el.name, "seed").Create(ctx, rec); err != nil {
		el.t.Fatalf("creating a released record: %v", err)
	}
}

// Start runs a candidate called id until the test ends or it is stopped.
// Its leader function records its term in the tracker and works until its
// context ends.
func (el *Election) Start(id string) *Candidate {
	el.t.Helper()
	return el.start(id, nil)
}

// start is Start with the candidate's lock wrapped by wrap, if set.
func (el *Election) start(id string, wrap func(lock.Interface) lock.Interface) *Candidate {
	t := el.t
	t.Helper()
	c := &Candidate{ID: id, Lock: el.h.NewLock(t, el.name, id), done: make(chan error, 1)}
	if wrap != nil {
		c.Lock = wrap(c.Lock)
	}
	// The elector's log goes to the test's, shown when it fails.
	log := testr.NewWithOptions(t, testr.Options{LogTimestamp: true})
	cfg := leaderelection.Config{
		Lock:          c.Lock,
		LeaseDuration: el.o.LeaseDuration, RenewDeadline: el.o.RenewDeadline, RetryPeriod: el.o.RetryPeriod,
		ReleaseOnCancel: true,
		Logger:          &log,
		Callbacks: leaderelection.Callbacks{OnStartedLeading: func(ctx context.Context) {
			n, _ := leaderelection.TermFrom(ctx)
			i := el.Tracker.Begin(id, n)
			<-ctx.Done()
			el.Tracker.End(i)
		}},
	}
	if el.cfg != nil {
		el.cfg(&cfg)
	}
	e, err := leaderelection.NewElector(cfg)
	if err != nil {
		t.Fatalf("NewElector(%s): %v", id, err)
	}
	c.Elector = e
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() {
		err := e.Run(ctx)
		c.exited.Store(true)
		c.done <- err
	}()
	t.Cleanup(func() { c.Stop(t) })
	el.cands = append(el.cands, c)
	return c
}

// Stop cancels the candidate's Run and returns its result.
func (c *Candidate) Stop(t *testing.T) error {
	t.Helper()
	c.cancel()
	return c.Wait(t, time.Minute)
}

// Wait waits up to within for Run to return, and returns its result.
func (c *Candidate) Wait(t *testing.T, within time.Duration) error {
	t.Helper()
	if c.ended {
		return c.result
	}
	select {
	case c.result = <-c.done:
		c.ended = true
		return c.result
	case <-time.After(within):
		t.Fatalf("%s: Run did not return within %v", c.ID, within)
		return nil
	}
}

// ByID returns the candidate called id.
func (el *Election) ByID(id string) *Candidate {
	for _, c := range el.cands {
		if c.ID == id {
			return c
		}
	}
	el.t.Fatalf("no candidate %q", id)
	return nil
}

// leaderAfter waits until a term after the first n has begun and is still
// open, and returns all terms.
func (el *Election) leaderAfter(n int, what string) []Term {
	el.t.Helper()
	return el.Tracker.WaitFor(el.t, what, el.o.Wait, func(ts []Term) bool {
		return len(ts) > n && ts[len(ts)-1].End.IsZero()
	})
}

// waitObserved waits until every candidate but the leader of term index
// reports it as the leader: each has read the record, so each knows the
// term and the lease it must respect. It returns false if that term ended
// first. A candidate whose Run has returned (a leader whose lease a slow
// store ended before, on a loaded machine: without Recampaign it is done)
// observes nothing and is not waited for; at least one other must observe.
func (el *Election) waitObserved(index int) bool {
	el.t.Helper()
	deadline := time.Now().Add(el.o.Wait)
	observers := 0
	for _, c := range el.cands {
		ended := false
		observed := poll.Within(time.Until(deadline), func() bool {
			tm := el.Tracker.Terms()[index]
			ended = !tm.End.IsZero()
			return ended || c.exited.Load() || c.ID == tm.ID || c.Elector.GetLeader() == tm.ID
		})
		if ended {
			return false
		}
		if !observed {
			el.t.Fatalf("%s has not observed %s leading within %v", c.ID, el.Tracker.Terms()[index].ID, el.o.Wait)
		}
		if !c.exited.Load() && c.ID != el.Tracker.Terms()[index].ID {
			observers++
		}
	}
	if observers == 0 {
		el.t.Fatalf("no candidate is left to observe %s leading: every other one's Run returned", el.Tracker.Terms()[index].ID)
	}
	return true
}
