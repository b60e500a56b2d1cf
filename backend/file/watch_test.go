//go:build unix

package file_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// A watch whose directory is removed and recreated (an operator wiping
// the lock's directory) keeps signalling changes: the elector treats a
// closed or silent watch as none, so it must not go silent.
func TestChangesKeepsSignallingAfterTheDirectoryIsRecreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "locks")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "lock.json")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	follower, err := file.New(ctx, file.Options{Path: path, Identity: "follower", PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	changes := follower.Changes(ctx)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Signals for the removal may be pending: drain until the watch has
	// settled, then write.
	for drained := false; !drained; {
		select {
		case <-changes:
		case <-time.After(200 * time.Millisecond):
			drained = true
		}
	}
	leader, err := file.New(ctx, file.Options{Path: path, Identity: "leader"})
	if err != nil {
		t.Fatal(err)
	}
	if err := leader.Create(ctx, locktest.NewRecord("leader", 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case _, open := <-changes:
		if !open {
			t.Fatal("the watch ended when its directory was removed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no signal for a record written after the directory was recreated")
	}
}
