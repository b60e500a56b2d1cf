package git_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/electiontest"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// The whole contract holds against a server that words its refusals as git
// 2.51 and later do ("incorrect old value provided", "reference already
// exists"): a lost race is a conflict, a deleted branch is not-found,
// because both are decided from the branch on the server, not from the
// words. Before, only "failed to update ref" / "failed to lock" counted as
// a lost race.
func TestConformanceGit251Refusals(t *testing.T) {
	// Every refusal costs one more ref listing: give the eight-way races
	// time on a loaded machine.
	locktest.RunConformanceTests(t, serveGit251(t).harness(t), locktest.Options{Wait: time.Minute})
}

// The renewal recovery path on a git 2.51 server: a renewal the leader
// gave up on lands late, so the leader's next renewal is refused. That must
// be a conflict, after which the elector reads its own record and renews
// from it, keeping its term. With the refusal mistaken for a plain error,
// every renewal failed the same way until the leader stepped down.
func TestRenewalRecoversFromOwnLateWriteOnGit251(t *testing.T) {
	srv := serveGit251(t)
	h := srv.harness(t)
	name := locktest.Name(t)
	tr := electiontest.NewTracker()
	e, err := leaderelection.NewElector(leaderelection.Config{
		// Durations with room for the recovery's four round trips to git
		// on a loaded machine.
		Lock: h.newLock(t, name, "a"), LeaseDuration: 10 * time.Second, RenewDeadline: 8 * time.Second, RetryPeriod: 2 * time.Second,
		Callbacks: leaderelection.Callbacks{OnStartedLeading: func(ctx context.Context) {
			n, _ := leaderelection.TermFrom(ctx)
			i := tr.Begin("a", n)
			<-ctx.Done()
			tr.End(i)
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	term := tr.WaitFor(t, "a to lead", 30*time.Second, func(ts []electiontest.Term) bool { return len(ts) == 1 })[0].Term

	// The late write: the same holder and term, written by another handle,
	// so the leader's lock no longer knows the branch's commit.
	late := h.newLock(t, name, "a")
	wctx, wcancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer wcancel()
	for {
		// The leader renews meanwhile; write on top of its newest renewal.
		rec, _, err := late.Get(wctx)
		if err != nil {
			t.Fatal(err)
		}
		rec.RenewTime.Time = rec.RenewTime.Add(time.Second)
		err = late.Update(wctx, *rec)
		if err == nil {
			break
		}
		if !lock.IsConflict(err) {
			t.Fatal(err)
		}
	}
	lateCommit := srv.repo.Git(t, "rev-parse", branch(name))

	// The leader renews past it, in the same term, without stepping down.
	deadline := time.Now().Add(30 * time.Second)
	for srv.repo.Git(t, "rev-parse", branch(name)) == lateCommit {
		if ts := tr.Terms(); !ts[0].End.IsZero() {
			t.Fatalf("the leader stepped down after its own late write: %+v", ts)
		}
		if time.Now().After(deadline) {
			t.Fatal("the leader never renewed past its own late write")
		}
		time.Sleep(50 * time.Millisecond) // polling the server's branch
	}
	var stored lock.Record
	if err := json.Unmarshal(h.Stored(t, name), &stored); err != nil {
		t.Fatal(err)
	}
	if stored.HolderIdentity != "a" || int64(stored.LeaderTransitions) != term {
		t.Fatalf("record %+v after the recovery, want holder a in term %d", stored, term)
	}
	if ts := tr.Terms(); len(ts) != 1 || !ts[0].End.IsZero() || !e.IsLeader() {
		t.Fatalf("terms %+v, leader %v: want the first term still running", ts, e.IsLeader())
	}
}

// A push the server refuses while the branch stays where the push expected
// it (a hook declined it) is no lost race: the error is plain, neither a
// conflict (which would make the elector read and retry at once, for ever)
// nor not-found (which would mean the record was deleted).
func TestRefusedPushWithBranchUnchangedIsNoConflict(t *testing.T) {
	for _, tr := range []struct {
		name  string
		serve func(testing.TB) served
	}{
		{"git-2.39", func(t testing.TB) served { return serveHTTP(t, testserver.GitHTTPAuth{}, nil) }},
		{"git-2.51", serveGit251},
	} {
		t.Run(tr.name, func(t *testing.T) {
			srv := tr.serve(t)
			h := srv.harness(t)
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			name := locktest.Name(t)
			a := h.NewLock(t, name, "a")
			if err := a.Create(ctx, locktest.NewRecord("a", 1)); err != nil {
				t.Fatal(err)
			}
			before := srv.repo.Git(t, "rev-parse", branch(name))
			hook := "#!/bin/sh\ncat >/dev/null\necho 'declined by policy' >&2\nexit 1\n"
			if err := os.WriteFile(filepath.Join(srv.repo.Dir, "hooks", "pre-receive"), []byte(hook), 0o755); err != nil {
				t.Fatal(err)
			}
			err := a.Update(ctx, locktest.NewRecord("a", 1))
			if err == nil || lock.IsConflict(err) || lock.IsNotFound(err) {
				t.Fatalf("Update refused by a hook returned %v, want a plain error", err)
			}
			if got := srv.repo.Git(t, "rev-parse", branch(name)); got != before {
				t.Fatalf("branch moved to %s", got)
			}
			t.Logf("refused by a hook: %v", err)
		})
	}
}
