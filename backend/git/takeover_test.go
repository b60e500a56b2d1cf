package git_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
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

type candidate struct {
	id     string
	proxy  *testserver.Proxy
	cancel context.CancelFunc
	done   chan error
}

// Three candidates, each reaching the real server through its own proxy:
// one leads; when it releases, another takes over with a higher term; when
// that one is cut off from the server, it steps down and the third takes
// over after the lease, never overlapping.
func TestThreeElectorsTakeOver(t *testing.T) {
	for _, tr := range []struct {
		name  string
		serve func(testing.TB) served
	}{
		{"smart-http", func(t testing.TB) served { return serveHTTP(t, testserver.GitHTTPAuth{}, nil) }},
		{"git-daemon", serveDaemon},
		{"ssh", func(t testing.TB) served { return serveSSH(t, false) }},
	} {
		t.Run(tr.name, func(t *testing.T) { testThreeElectorsTakeOver(t, tr.serve(t)) })
	}
}

func testThreeElectorsTakeOver(t *testing.T, srv served) {
	name := locktest.Name(t)
	seen := leadertest.New()
	// newLeader waits until a candidate other than not leads.
	newLeader := func(not string, within time.Duration) (string, int64) {
		t.Helper()
		ts := seen.WaitFor(t, fmt.Sprintf("a leader other than %q", not), within, func(ts []leadertest.Term) bool {
			n := len(ts)
			return n > 0 && ts[n-1].End.IsZero() && ts[n-1].ID != not
		})
		last := ts[len(ts)-1]
		return last.ID, last.Term
	}
	cands := map[string]*candidate{}
	for _, id := range []string{"a", "b", "c"} {
		p, url := srv.proxy(t)
		cfg := git.Options{URL: url, Name: name, Identity: id}
		if srv.auth != nil {
			srv.auth(&cfg)
		}
		l, err := git.New(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		e, err := leaderelection.NewElector(leaderelection.Config{
			Lock: l, LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.Callbacks{OnStartedLeading: func(ctx context.Context) {
				term, _ := leaderelection.TermFrom(ctx)
				i := seen.Begin(id, term)
				<-ctx.Done()
				seen.End(i)
			}},
		})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		c := &candidate{id: id, proxy: p, cancel: cancel, done: make(chan error, 1)}
		go func() { c.done <- e.Run(ctx) }()
		cands[id] = c
	}
	t.Cleanup(func() {
		for _, c := range cands {
			c.cancel()
		}
		for _, c := range cands {
			<-c.done
		}
	})

	first, term1 := newLeader("", 20*time.Second)
	// Graceful hand-over: the leader releases; a follower polling every
	// RetryPeriod takes over without waiting for the lease.
	cands[first].cancel()
	if err := <-cands[first].done; err != nil {
		t.Fatalf("%s: Run after cancel: %v", first, err)
	}
	delete(cands, first)
	second, term2 := newLeader(first, 20*time.Second)
	if term2 <= term1 {
		t.Fatalf("term went from %d to %d on take-over", term1, term2)
	}
	// Partition: the second leader cannot reach the server. It must step
	// down (RenewDeadline) before the third takes over (LeaseDuration).
	resume := cands[second].proxy.Stall()
	defer resume()
	third, term3 := newLeader(second, 30*time.Second)
	if term3 <= term2 {
		t.Fatalf("term went from %d to %d on take-over after a partition", term2, term3)
	}
	select {
	case err := <-cands[second].done:
		if !errors.Is(err, leaderelection.ErrLeaseLost) {
			t.Fatalf("partitioned leader's Run returned %v, want ErrLeaseLost", err)
		}
		delete(cands, second)
	case <-time.After(10 * time.Second):
		t.Fatal("partitioned leader's Run did not return")
	}
	seen.Check(t)
	t.Logf("leaders: %s (term %d), %s (term %d), %s (term %d)", first, term1, second, term2, third, term3)
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
