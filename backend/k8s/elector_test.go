package k8s_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/electiontest"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// fast is the timing the elector tests use: a 1s safety margin between the
// leader's step-down and a follower's take-over.
var fast = timing{lease: 3 * time.Second, renew: 2 * time.Second, retry: time.Second}

type timing struct{ lease, renew, retry time.Duration }

// candidate is one of our electors on its own client.
type candidate struct {
	id      string
	lock    *k8s.Lock
	elector *leaderelection.Elector
	cancel  context.CancelFunc
	done    chan error
}

// startCandidate runs an elector for id on namespace/name through cfg
// until the test ends or it is stopped. Its leader function reports to tr.
func startCandidate(t *testing.T, cfg *rest.Config, ns, name, id string, tm timing, release bool, tr *electiontest.Tracker) *candidate {
	t.Helper()
	l := newLock(t, cfg, ns, name, id)
	e, err := leaderelection.NewElector(leaderelection.Config{
		Lock:            l,
		LeaseDuration:   tm.lease,
		RenewDeadline:   tm.renew,
		RetryPeriod:     tm.retry,
		ReleaseOnCancel: release,
		Callbacks: leaderelection.Callbacks{
			OnStartedLeading: func(ctx context.Context) {
				n, _ := leaderelection.TermFrom(ctx)
				i := tr.Begin(id, n)
				<-ctx.Done()
				tr.End(i)
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &candidate{id: id, lock: l, elector: e, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- e.Run(ctx) }()
	t.Cleanup(func() { c.stop(t) })
	return c
}

// startCandidates starts n candidates, c0 to c(n-1), on one Lease.
func startCandidates(t *testing.T, n int, cfg *rest.Config, ns, name string, tm timing, release bool, tr *electiontest.Tracker) []*candidate {
	t.Helper()
	var cands []*candidate
	for i := range n {
		cands = append(cands, startCandidate(t, cfg, ns, name, fmt.Sprintf("c%d", i), tm, release, tr))
	}
	return cands
}

// seedReleased creates the Lease as a released record (no holder, term 0),
// as a graceful stop leaves it, so that the first candidate takes it at once
// instead of leading only once its claim has stood RenewDeadline +
// max(LeaseDuration, 2.2 × RetryPeriod), as it must when it finds no record
// (it may have just been deleted under a leader): with the slow timing that
// wait is longer than the tests wait.
func seedReleased(t *testing.T, cfg *rest.Config, ns, name string) {
	t.Helper()
	now := metav1.Now()
	rec := lock.Record{LeaseDurationSeconds: 1, AcquireTime: now, RenewTime: now}
	if err := newLock(t, cfg, ns, name, "seed").Create(context.Background(), rec); err != nil {
		t.Fatalf("creating a released Lease: %v", err)
	}
}

// stop cancels the candidate's Run and waits for it to return.
func (c *candidate) stop(t *testing.T) error {
	t.Helper()
	c.cancel()
	select {
	case err, ok := <-c.done:
		if ok {
			close(c.done)
		}
		return err
	case <-time.After(wait):
		t.Fatalf("%s: Run did not return within %v of its context ending", c.id, wait)
		return nil
	}
}

func leaderOf(cands []*candidate, id string) *candidate {
	for _, c := range cands {
		if c.id == id {
			return c
		}
	}
	return nil
}

// electionHarness gives every candidate's lock a client and a proxy of its
// own, so that one candidate can be cut off from the API server.
type electionHarness struct {
	*harness // Delete
	testserver.ProxyCutter
}

// Block stalls every candidate's proxy.
func (h *electionHarness) Block(t *testing.T, name string) func() {
	return h.ProxyCutter.Block(t, name)
}

func (h *electionHarness) NewLock(t *testing.T, name, id string) lock.Interface {
	p := testserver.StartProxy(t, h.s.kube.Addr)
	l := newLock(t, h.s.kube.ConfigVia(h.s.kube.Config(), p.Addr()), h.namespace, name, id)
	h.Track(l, p)
	return l
}

// The shared elector scenarios (lock/electiontest) against a real API
// server, each in a namespace of its own: a graceful release, then a
// leader whose API calls stall (it steps down RenewDeadline after its last
// good renewal, before anyone else takes over LeaseDuration after
// observing that renewal), then a take-over; a killed leader replaced
// only after its lease; releases handed over through the watch; the
// Lease deleted under a leader; TermLimit hand-overs; an outage.
func TestElectorScenarios(t *testing.T) {
	s := sharedServer(t)
	electiontest.RunScenarios(t, func(t *testing.T) electiontest.Harness {
		return &electionHarness{harness: &harness{s: s, namespace: s.namespace(t)}}
	}, electiontest.Options{LeaseDuration: fast.lease, RenewDeadline: fast.renew, RetryPeriod: fast.retry})
}

// When the leader's API calls crawl, it steps down RenewDeadline after its
// last good renewal, before anyone else takes over LeaseDuration after
// observing that renewal: never two leaders. (Calls that stall outright
// are TestElectorScenarios' cut-off.)
func TestSlowAPIMakesLeaderStepDownBeforeTakeover(t *testing.T) {
	for _, fault := range []struct {
		name   string
		inject func(p *testserver.Proxy) (undo func())
	}{
		{"Delay", func(p *testserver.Proxy) func() {
			p.SetDelay(fast.lease) // every chunk, both ways: no renewal fits in RenewDeadline
			return func() { p.SetDelay(0) }
		}},
	} {
		t.Run(fault.name, func(t *testing.T) {
			s := sharedServer(t)
			ns, name := s.namespace(t), locktest.Name(t)
			tr := electiontest.NewTracker()
			proxies := map[string]*testserver.Proxy{}
			for i := range 3 {
				id := fmt.Sprintf("c%d", i)
				p := testserver.StartProxy(t, s.kube.Addr)
				proxies[id] = p
				startCandidate(t, s.kube.ConfigVia(s.kube.Config(), p.Addr()), ns, name, id, fast, true, tr)
			}
			first := tr.WaitFor(t, "a leader", wait, func(ts []electiontest.Term) bool { return len(ts) == 1 })[0]
			undo := fault.inject(proxies[first.ID])
			ts := tr.WaitFor(t, "the slow leader to step down and another to lead", wait, func(ts []electiontest.Term) bool {
				return len(ts) >= 2 && !ts[0].End.IsZero()
			})
			undo()
			if ts[1].ID == first.ID {
				t.Errorf("the slowed leader %s led again", first.ID)
			}
			if ts[1].Start.Before(ts[0].End) {
				t.Errorf("%s started at %v, before %s stepped down at %v", ts[1].ID, ts[1].Start, first.ID, ts[0].End)
			}
			tr.Check(t)
		})
	}
}

// The API server restarting mid-term (a crash: SIGKILL, then start on the
// same etcd) costs nothing: the leader keeps its term through the outage,
// and followers' watches come back, so a later release still hands over at
// once.
func TestAPIServerRestartMidTerm(t *testing.T) {
	kube := testserver.StartKube(t)
	s := &server{kube: kube, admin: clientset(t, kube.Config())}
	ns, name := s.namespace(t), locktest.Name(t)
	tr := electiontest.NewTracker()
	seedReleased(t, kube.Config(), ns, name)
	// The restart (SIGKILL, start, /readyz) may take up to RestartAPIServer's
	// 90 s on a loaded machine: the leader must be able to ride it out, so
	// its RenewDeadline is longer. The hand-over at the end is a release
	// seen on the watch, which no lease length delays.
	outage := timing{lease: 150 * time.Second, renew: 120 * time.Second, retry: 2 * time.Second}
	cands := startCandidates(t, 3, kube.Config(), ns, name, outage, true, tr)
	first := tr.WaitFor(t, "a leader", wait, func(ts []electiontest.Term) bool { return len(ts) == 1 })[0]
	leader := leaderOf(cands, first.ID)

	kube.RestartAPIServer(t)
	restarted := time.Now()
	poll.Until(t, "the leader to renew after the API server's restart", wait, func() bool {
		return !leader.elector.Status().LastRenew.Before(restarted) // its status has no change signal
	})
	if got := leader.elector.Term(); got != first.Term || !leader.elector.IsLeader() {
		t.Fatalf("after the restart %s leads=%v in term %d, want term %d", first.ID, leader.elector.IsLeader(), got, first.Term)
	}
	if err := leader.stop(t); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("%s: Run returned %v", leader.id, err)
	}
	tr.WaitFor(t, "a hand-over through the re-established watch", wait, func(ts []electiontest.Term) bool { return len(ts) == 2 })
	tr.Check(t)
}
