package git_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	k8sle "k8s.io/client-go/tools/leaderelection"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/git"
	"github.com/b3df926d/leaderelection/internal/leadertest"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// electionHarness gives every candidate's lock a proxy of its own to the
// server, so that one candidate can be cut off.
type electionHarness struct {
	*harness // Delete
	srv      served
	leadertest.ProxyCutter
}

func newElectionHarness(srv served) *electionHarness {
	return &electionHarness{harness: &harness{repo: srv.repo}, srv: srv}
}

func (h *electionHarness) NewLock(t *testing.T, name, id string) lock.Interface {
	t.Helper()
	p, url := h.srv.proxy(t)
	l, err := git.New(context.Background(), h.srv.config(url, name, id))
	if err != nil {
		t.Fatal(err)
	}
	h.Track(l, p)
	return l
}

// The shared elector scenarios (internal/leadertest): all of them over
// smart HTTP (the branch deleted under a leader, TermLimit hand-overs, a
// graceful release then a leader cut off by a stalled proxy then a
// take-over), and the cut-off over git daemon and ssh too.
func TestElectorScenarios(t *testing.T) {
	// Every git call forks git on the server, and a renewal or take-over
	// takes several calls: durations with room for a loaded machine.
	opts := leadertest.Options{LeaseDuration: 10 * time.Second, RenewDeadline: 7 * time.Second, RetryPeriod: 2 * time.Second}
	cutOff := opts
	cutOff.Only = []string{"ReleaseThenCutOffThenTakeOver"}
	for _, tr := range []struct {
		name  string
		serve func(testing.TB) served
		opts  leadertest.Options
	}{
		{"smart-http", func(t testing.TB) served { return serveHTTP(t, testserver.GitHTTPAuth{}, nil) }, opts},
		{"git-daemon", serveDaemon, cutOff},
		{"ssh", func(t testing.TB) served { return serveSSH(t, false) }, cutOff},
	} {
		t.Run(tr.name, func(t *testing.T) {
			leadertest.RunScenarios(t, newElectionHarness(tr.serve(t)), tr.opts)
		})
	}
}

// The git lock works under client-go's elector too, and a lock released by
// client-go's elector is taken over by this module's.
func TestClientGoElectorLeadsThenHandsOverToOurs(t *testing.T) {
	srv := serveDaemon(t)
	h := srv.harness(t)
	name := locktest.Name(t)
	started := make(chan struct{})
	le, err := k8sle.NewLeaderElector(k8sle.LeaderElectionConfig{
		Lock: h.newLock(t, name, "client-go"), LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second,
		RetryPeriod: time.Second, ReleaseOnCancel: true,
		Callbacks: k8sle.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) { close(started); <-ctx.Done() },
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { le.Run(ctx); close(done) }()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		t.Fatal("client-go's elector did not acquire the git lock")
	}
	cancel()
	<-done
	var rec lock.Record
	if err := json.Unmarshal(h.Stored(t, name), &rec); err != nil || rec.HolderIdentity != "" || rec.LeaderTransitions != 0 {
		t.Fatalf("after client-go released: record %+v (%v), want no holder", rec, err)
	}

	terms := make(chan int64, 1)
	e, err := leaderelection.NewElector(leaderelection.Config{
		Lock: h.newLock(t, name, "ours"), LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
		Callbacks: leaderelection.Callbacks{OnStartedLeading: func(ctx context.Context) {
			term, _ := leaderelection.TermFrom(ctx)
			terms <- term
			<-ctx.Done()
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	done2 := make(chan error, 1)
	go func() { done2 <- e.Run(ctx2) }()
	select {
	case term := <-terms:
		if term != 1 {
			t.Errorf("took over with term %d, want 1 (client-go's first acquisition counts 0)", term)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("our elector did not take over the released lock")
	}
	cancel2()
	if err := <-done2; err != nil {
		t.Fatal(err)
	}
}
