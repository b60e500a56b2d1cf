package s3_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	leaderelection "github.com/b3df926d/leaderelection"
	s3lock "github.com/b3df926d/leaderelection/backend/s3"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock/electiontest"
)

// s3Election is a set of candidates, each its own process in all but name:
// its own S3 client, a proxy of its own in front of the server (so one
// candidate can be cut off), and a counter of the requests it sends. Every
// start of a term checks that no other candidate's leader function is still
// running.
type s3Election struct {
	t     *testing.T
	s     *store
	name  string
	cfg   leaderelection.Config // durations and options for every candidate
	cache time.Duration         // Options.ReleaseCheckInterval

	tr *electiontest.Tracker // terms started, checked for overlap when the test ends

	mu     sync.Mutex
	events []string
}

type s3Candidate struct {
	id      string
	proxy   *testserver.Proxy
	counter *testserver.RequestCounter
	e       *leaderelection.Elector
	cancel  context.CancelFunc
	done    chan error

	mu               sync.Mutex
	started, stopped time.Time // of the last term
	termIndex        int       // the tracker's index of the last term
}

func newS3Election(t *testing.T, s *store, lease, renew, retry time.Duration, cache time.Duration) *s3Election {
	el := &s3Election{
		t: t, s: s, name: fmt.Sprintf("election-%d", time.Now().UnixNano()), cache: cache,
		cfg: leaderelection.Config{LeaseDuration: lease, RenewDeadline: renew, RetryPeriod: retry, ReleaseOnCancel: true},
		tr:  electiontest.NewTracker(),
	}
	// Registered first, so it runs after every candidate has stopped.
	t.Cleanup(func() { el.tr.Check(t) })
	return el
}

func (el *s3Election) logf(format string, args ...any) {
	el.mu.Lock()
	defer el.mu.Unlock()
	el.events = append(el.events, time.Now().Format("15:04:05.000 ")+fmt.Sprintf(format, args...))
}

// add starts a candidate.
func (el *s3Election) add(id string) *s3Candidate {
	t := el.t
	t.Helper()
	c := &s3Candidate{id: id, proxy: testserver.StartProxy(t, el.s.addr), counter: &testserver.RequestCounter{}, done: make(chan error, 1)}
	client := el.s.client("http://"+c.proxy.Addr(), withCounter(c.counter))
	lk := newLock(t, client, el.name, id, func(o *s3lock.Options) { o.ReleaseCheckInterval = el.cache })
	cfg := el.cfg
	discard := logr.Discard()
	cfg.Lock, cfg.Logger = lk, &discard
	cfg.Callbacks = leaderelection.Callbacks{
		OnStartedLeading: func(ctx context.Context) {
			el.started(c, ctx)
			defer el.stopped(c)
			<-ctx.Done()
		},
	}
	e, err := leaderelection.NewElector(cfg)
	if err != nil {
		t.Fatalf("NewElector(%s): %v", id, err)
	}
	c.e = e
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	go func() { c.done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-c.done:
			c.done <- err
		case <-time.After(30 * time.Second):
			t.Errorf("%s: Run did not return after cancel", id)
		}
	})
	return c
}

func (el *s3Election) started(c *s3Candidate, ctx context.Context) {
	term, _ := leaderelection.TermFrom(ctx)
	el.logf("%s starts leading, term %d", c.id, term)
	i := el.tr.Begin(c.id, term)
	c.mu.Lock()
	c.started, c.termIndex = time.Now(), i
	c.mu.Unlock()
}

func (el *s3Election) stopped(c *s3Candidate) {
	c.mu.Lock()
	c.stopped = time.Now()
	i := c.termIndex
	c.mu.Unlock()
	el.logf("%s's leader function returned", c.id)
	el.tr.End(i)
}

// leader waits until one of cands leads and returns it.
func (el *s3Election) leader(cands ...*s3Candidate) *s3Candidate {
	el.t.Helper()
	// A new lock gets its first leader when its first claim has stood
	// RenewDeadline + max(LeaseDuration, 2.2 × RetryPeriod) (and three
	// reads); a held one within a lease.
	deadline := time.Now().Add(el.cfg.RenewDeadline + max(el.cfg.LeaseDuration, el.cfg.RetryPeriod*22/10) + 10*time.Second)
	for time.Now().Before(deadline) {
		for _, c := range cands {
			if c.e.IsLeader() {
				return c
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	el.t.Fatalf("no leader among %d candidates", len(cands))
	return nil
}

// termsStarted returns every term started so far, in order.
func (el *s3Election) termsStarted() []int64 {
	var terms []int64
	for _, tm := range el.tr.Terms() {
		terms = append(terms, tm.Term)
	}
	return terms
}

func (el *s3Election) dump() {
	el.mu.Lock()
	defer el.mu.Unlock()
	for _, e := range el.events {
		el.t.Log(e)
	}
}

// wait returns Run's result.
func (c *s3Candidate) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-c.done:
		c.done <- err // keep it for cleanup
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: Run did not return", c.id)
		return nil
	}
}

func (c *s3Candidate) times() (started, stopped time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started, c.stopped
}

func others(all []*s3Candidate, not *s3Candidate) []*s3Candidate {
	var out []*s3Candidate
	for _, c := range all {
		if c != not {
			out = append(out, c)
		}
	}
	return out
}

// Fast durations for real-time tests; the elector requires RetryPeriod >= 1s.
const (
	fastLease = 3 * time.Second
	fastRenew = 2 * time.Second
	fastRetry = time.Second
)

// The shared elector scenarios (lock/electiontest) against one versitygw,
// each with proxies of its own: a graceful release taken over before the
// lease could expire, though followers cannot watch and read through the
// release-check cache; a leader cut off from S3 replaced only after its
// lease; a killed leader likewise; the lock object deleted under a leader;
// TermLimit hand-overs; an outage. The lease is long enough that a release
// check (every lease/3) plus a poll is clearly shorter than waiting for
// expiry.
func TestElectorScenariosOnVersityGW(t *testing.T) {
	s := startVersityGW(t)
	electiontest.RunScenarios(t, func(*testing.T) electiontest.Harness { return newElectionHarness(s) }, electiontest.Options{
		LeaseDuration: 6 * time.Second, RenewDeadline: 4 * time.Second, RetryPeriod: time.Second,
	})
}

// A leader that cannot reach S3 steps down RenewDeadline after its last
// good renewal started, before its lease could expire for anyone else;
// then, S3 reachable again, it is a follower of whoever took over.
func TestLeaderStepsDownBeforeLeaseExpiresWhenS3Unreachable(t *testing.T) {
	el := newS3Election(t, startVersityGW(t), fastLease, fastRenew, fastRetry, 0)
	defer func() {
		if t.Failed() {
			el.dump()
		}
	}()
	a, b := el.add("a"), el.add("b")
	leader := el.leader(a, b)
	follower := others([]*s3Candidate{a, b}, leader)[0]
	time.Sleep(2 * fastRetry) // a few renewals

	resume := leader.proxy.Stall()
	defer resume()
	if err := leader.wait(t); !errors.Is(err, leaderelection.ErrLeaseLost) {
		t.Errorf("Run after losing S3 returned %v, want ErrLeaseLost", err)
	}
	lastRenew := leader.counter.LastOK("PUT")
	_, stepDown := leader.times()
	t.Logf("stepped down %v after the last successful renewal (RenewDeadline %v, lease %v)",
		stepDown.Sub(lastRenew).Round(time.Millisecond), fastRenew, fastLease)
	// The last renewal that succeeded started before its answer arrived,
	// so the step-down timer fires at most RenewDeadline after lastRenew
	// (on a fake clock, exactly: TestRenewFailureStepsDownBeforeAnother-
	// CandidateCanAcquire); stepDown is when the leader's function saw
	// it, which a loaded machine may delay. What must hold is safety:
	// before the lease ran out.
	if stepDown.Sub(lastRenew) >= fastLease {
		t.Errorf("stepped down %v after the last renewal, not before the %v lease expired", stepDown.Sub(lastRenew), fastLease)
	}
	el.leader(follower)
	followerStart, _ := follower.times()
	if !followerStart.After(stepDown) {
		t.Errorf("the follower started leading at %v, before the cut-off leader stepped down at %v", followerStart, stepDown)
	}
}
