package git_test

import (
	"encoding/json"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/b3df926d/leaderelection/backend/git"
	"github.com/b3df926d/leaderelection/internal/benchtest"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// The first candidate on a brand-new git lock leads at once: no marker ref
// (git.MarkerRef) proves that no record was ever written. Deleting the
// branch afterwards is a deletion, not a new lock: the marker stays.
// Deleting the marker as well resets the lock to new.
func TestNewLockLeadsAtOnceADeletedBranchDoesNot(t *testing.T) {
	h := newHTTPHarness(t, testserver.GitHTTPAuth{}, nil)
	name := locktest.Name(t)
	benchtest.NewLockLeadsAtOnceADeletedOneDoesNot(t, h, h, name, func() {
		h.repo.Git(t, "update-ref", "-d", git.MarkerRef(plumbing.ReferenceName(branch(name))).String())
	})
}

// A record written before locks made markers (here by git itself) gets
// one at its next write, so that deleting it afterwards is a deletion.
func TestRecordWithoutMarkerGetsOneAtTheNextWrite(t *testing.T) {
	h := newLocalHarness(t)
	name := locktest.Name(t)
	raw, err := json.Marshal(locktest.NewRecord("old", 3))
	if err != nil {
		t.Fatal(err)
	}
	h.repo.Git(t, "update-ref", branch(name), h.commitRecord(t, name, raw))
	locktest.UpdateThenDeleteIsNotNew(t, h, h, name)
}

// BenchmarkFirstLeaderOnNewLock measures the time from Run to the first
// OnStartedLeading on a brand-new git lock (a new branch in a repository
// served by git http-backend on loopback), for this module's elector and
// client-go's, at 15s/10s/2s and 2s/1.5s/1s (ms/first-leader):
//
//	go test -run '^$' -bench FirstLeaderOnNewLock -benchtime 3x ./backend/git
func BenchmarkFirstLeaderOnNewLock(b *testing.B) {
	h := newHTTPHarness(b, testserver.GitHTTPAuth{}, nil)
	fresh := func(tb testing.TB, name, id string) lock.Interface { return h.newLock(tb, name, id) }
	benchtest.FirstLeader(b, fresh, fresh)
}
