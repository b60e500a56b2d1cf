//go:build unix

package file_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/internal/benchtest"
	"github.com/b3df926d/leaderelection/lock"
)

// BenchmarkFirstLeaderOnNewLock measures the time from Run to the first
// OnStartedLeading on a brand-new file lock, for this module's elector and
// for client-go's (which creates the record at once, taking no care for a
// record deleted under a working leader), at Kubernetes' defaults
// 15s/10s/2s and at 2s/1.5s/1s. Reported as ms/first-leader per elector:
//
//	go test -run '^$' -bench FirstLeaderOnNewLock -benchtime 20x ./backend/file
func BenchmarkFirstLeaderOnNewLock(b *testing.B) {
	benchtest.FirstLeader(b, newLockIn, newLockIn)
}

// newLockIn returns a handle on a new file lock in a directory of its own.
func newLockIn(tb testing.TB, _, id string) lock.Interface {
	l, err := file.New(context.Background(), file.Options{Path: filepath.Join(tb.TempDir(), "leader.json"), Identity: id})
	if err != nil {
		tb.Fatal(err)
	}
	return l
}
