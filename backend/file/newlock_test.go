//go:build unix

package file_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	leaderelection "github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/lock"
)

// runElector starts one candidate at the default durations (15s/10s/2s) on
// the file lock at path and returns a channel that receives its term when
// it starts leading, and the function that stops it.
func runElector(t *testing.T, path, id string) (<-chan int64, func()) {
	t.Helper()
	l, err := file.New(context.Background(), file.Options{Path: path, Identity: id})
	if err != nil {
		t.Fatal(err)
	}
	led := make(chan int64, 1)
	e, err := leaderelection.NewElector(leaderelection.Config{
		Lock:            l,
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.Callbacks{OnStartedLeading: func(ctx context.Context) {
			term, _ := leaderelection.TermFrom(ctx)
			led <- term
			<-ctx.Done()
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run: %v", id, err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	return led, stop
}

// The first candidate on a brand-new lock leads at once: the lock proves
// that no record was ever written (lock.ErrNeverWritten), so there is no
// leader a deletion could have been made under. Without that proof it
// would take a claim that stands RenewDeadline + LeaseDuration (25 s at
// these defaults) before leading; the test allows RenewDeadline.
//
// Removing the record afterwards (rm leader.json) is a deletion, not a new
// lock: the marker stays, and a candidate that never saw the record is told
// only that it is missing, so it waits as the elector's rules say.
func TestNewLockLeadsAtOnceADeletedRecordDoesNot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leader.json")
	led, stop := runElector(t, path, "first")
	select {
	case term := <-led:
		if term != 1 {
			t.Errorf("first leader's term = %d, want 1", term)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first candidate on a new lock did not lead within RenewDeadline (10s): it waited as if the record could have been deleted")
	}
	stop()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	l, err := file.New(context.Background(), file.Options{Path: path, Identity: "fresh"})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = l.Get(context.Background())
	if !lock.IsNotFound(err) || errors.Is(err, lock.ErrNeverWritten) {
		t.Fatalf("Get after rm of the record = %v, want a plain not-found (a deletion, not a new lock)", err)
	}
	if err := os.Remove(path + ".written"); err != nil {
		t.Fatalf("the marker that a record was written: %v", err)
	}
	if _, _, err := l.Get(context.Background()); !errors.Is(err, lock.ErrNeverWritten) {
		t.Fatalf("Get with record and marker removed (a reset) = %v, want lock.ErrNeverWritten", err)
	}
}
