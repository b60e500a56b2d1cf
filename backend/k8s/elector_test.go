package k8s_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/electiontest"
)

// fast is the timing the elector tests use: a 1s safety margin between the
// leader's step-down and a follower's take-over.
var fast = timing{lease: 3 * time.Second, renew: 2 * time.Second, retry: time.Second}

type timing struct{ lease, renew, retry time.Duration }

// options are the scenario options at this timing, waiting up to wait.
func (tm timing) options() electiontest.Options {
	return electiontest.Options{LeaseDuration: tm.lease, RenewDeadline: tm.renew, RetryPeriod: tm.retry, Wait: wait}
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
			h := &electionHarness{harness: &harness{s: s, namespace: s.namespace(t)}}
			el := electiontest.NewElection(t, h, fast.options(), nil)
			for i := range 3 {
				el.Start(fmt.Sprintf("c%d", i))
			}
			tr := el.Tracker
			first := tr.WaitFor(t, "a leader", wait, func(ts []electiontest.Term) bool { return len(ts) == 1 })[0]
			undo := fault.inject(h.Proxy(el.ByID(first.ID).Lock))
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
	s := &server{kube: kube, admin: testserver.Clientset(t, kube.Config())}
	// The restart (SIGKILL, start, /readyz) may take up to RestartAPIServer's
	// 90 s on a loaded machine: the leader must be able to ride it out, so
	// its RenewDeadline is longer. The hand-over at the end is a release
	// seen on the watch, which no lease length delays.
	outage := timing{lease: 150 * time.Second, renew: 120 * time.Second, retry: 2 * time.Second}
	el := electiontest.NewElection(t, &harness{s: s, namespace: s.namespace(t), cfg: kube.Config()}, outage.options(), nil)
	for i := range 3 {
		el.Start(fmt.Sprintf("c%d", i))
	}
	tr := el.Tracker
	first := tr.WaitFor(t, "a leader", wait, func(ts []electiontest.Term) bool { return len(ts) == 1 })[0]
	leader := el.ByID(first.ID)

	kube.RestartAPIServer(t)
	restarted := time.Now()
	poll.Until(t, "the leader to renew after the API server's restart", wait, func() bool {
		return !leader.Elector.Status().LastRenew.Before(restarted) // its status has no change signal
	})
	if got := leader.Elector.Term(); got != first.Term || !leader.Elector.IsLeader() {
		t.Fatalf("after the restart %s leads=%v in term %d, want term %d", first.ID, leader.Elector.IsLeader(), got, first.Term)
	}
	if err := leader.Stop(t); err != nil && !errors.Is(err, context.Canceled) {
		t.Fatalf("%s: Run returned %v", leader.ID, err)
	}
	tr.WaitFor(t, "a hand-over through the re-established watch", wait, func(ts []electiontest.Term) bool { return len(ts) == 2 })
	tr.Check(t)
}
