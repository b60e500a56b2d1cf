//go:build unix

package file

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/electiontest"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

type harness struct {
	dir string
	// poll makes the locks' watchers poll, as where inotify is
	// unavailable.
	poll bool
}

func (h harness) path(name string) string { return filepath.Join(h.dir, name+".json") }

func (h harness) NewLock(t *testing.T, name, identity string) lock.Interface {
	l, err := New(context.Background(), Options{Path: h.path(name), Identity: identity, PollInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	l.noInotify = h.poll
	return l
}

func (h harness) Corrupt(t *testing.T, name string) {
	if err := os.WriteFile(h.path(name), []byte(`{"version": "seven"`), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (h harness) Stored(t *testing.T, name string) []byte {
	b, err := os.ReadFile(h.path(name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Delete removes the record file, as an operator's rm would.
func (h harness) Delete(t *testing.T, name string) {
	if err := os.Remove(h.path(name)); err != nil {
		t.Fatal(err)
	}
}

// Block holds the exclusive flock, as a hung process would.
func (h harness) Block(t *testing.T, name string) func() {
	f, err := os.OpenFile(h.path(name)+".lock", os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() { f.Close() }
}

func TestFileLockConformance(t *testing.T) {
	locktest.RunConformanceTests(t, harness{dir: t.TempDir()}, locktest.Options{})
}

// The suite again with the polling watcher, as where inotify is
// unavailable.
func TestFileLockConformancePolling(t *testing.T) {
	locktest.RunConformanceTests(t, harness{dir: t.TempDir(), poll: true}, locktest.Options{})
}

// The elector scenarios every backend passes (lock/electiontest), each in
// a directory of its own: records deleted under the leader, TermLimit
// hand-overs, a killed leader, releases seen through inotify, an outage
// (the flock held). Candidates on one host cannot be cut off from a file,
// so the partition scenario is skipped.
func TestElectorScenarios(t *testing.T) {
	electiontest.RunScenarios(t, func(t *testing.T) electiontest.Harness { return harness{dir: t.TempDir()} }, electiontest.Options{})
}

func TestNewRejectsBadPaths(t *testing.T) {
	dir := t.TempDir()
	readOnly := filepath.Join(dir, "ro")
	if err := os.Mkdir(readOnly, 0o555); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(dir, "plain")
	if err := os.WriteFile(notDir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "adir"), 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, path, id, want string
	}{
		{"empty path", "", "a", "Options.Path must not be empty"},
		{"missing directory", filepath.Join(dir, "missing", "l.json"), "a", filepath.Join(dir, "missing")},
		{"parent is a file", filepath.Join(notDir, "l.json"), "a", "not a directory"},
		{"path is a directory", filepath.Join(dir, "adir"), "a", "is a directory"},
	}
	if os.Geteuid() != 0 { // root may write anywhere
		cases = append(cases, struct{ name, path, id, want string }{"unwritable directory", filepath.Join(readOnly, "l.json"), "a", "not writable"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(context.Background(), Options{Path: tc.path, Identity: tc.id})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New(%q, %q) = %v, want an error containing %q", tc.path, tc.id, err, tc.want)
			}
		})
	}
}

// An empty Identity is lock.DefaultIdentity(): no candidate has to repeat
// what RunOrDie would default anyway.
func TestEmptyIdentityDefaults(t *testing.T) {
	t.Setenv("POD_NAME", "pod-x")
	l, err := New(context.Background(), Options{Path: filepath.Join(t.TempDir(), "l.json")})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Identity(); got != "pod-x" || got != lock.DefaultIdentity() {
		t.Fatalf("Identity() = %q, want lock.DefaultIdentity() %q", got, lock.DefaultIdentity())
	}
}

func TestUnreadableRecordIsClearError(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root reads any file")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "l.json")
	l, err := New(context.Background(), Options{Path: path, Identity: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Create(context.Background(), locktest.NewRecord("a", 1)); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0); err != nil {
		t.Fatal(err)
	}
	_, _, err = l.Get(context.Background())
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Get of an unreadable file = %v, want an error naming %s", err, path)
	}
}

func TestRecordWithoutVersionIsCorrupt(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "l.json")
	if err := os.WriteFile(path, []byte(`{"record":{"holderIdentity":"x"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := New(context.Background(), Options{Path: path, Identity: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Get(context.Background()); !errors.Is(err, lock.ErrCorrupt) {
		t.Fatalf("Get = %v, want ErrCorrupt", err)
	}
}

// The polling watcher (where inotify is unavailable) signals a record
// written right after Changes returned: its baseline is taken before
// Changes returns, not in the goroutine, where a write landing first would
// be part of the baseline and never signalled. The test holds the
// watcher's goroutine back until the write is done, as a busy machine may.
func TestPollingWatcherSignalsChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "l.json")
	a, err := New(context.Background(), Options{Path: path, Identity: "a", PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	a.noInotify = true
	gate := make(chan struct{})
	a.pollGate = gate
	b, err := New(context.Background(), Options{Path: path, Identity: "b"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := a.Changes(ctx)
	if err := b.Create(context.Background(), locktest.NewRecord("b", 1)); err != nil {
		t.Fatal(err)
	}
	close(gate)
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("polling watcher did not signal a new record")
	}
	cancel()
	for range ch {
	}
}

// An empty file, as `touch` leaves it, is no record: the first candidate
// creates one.
func TestEmptyFileIsNoRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "l.json")
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	l, err := New(context.Background(), Options{Path: path, Identity: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Get(context.Background()); !lock.IsNotFound(err) {
		t.Fatalf("Get of an empty file = %v, want not found", err)
	}
	if err := l.Create(context.Background(), locktest.NewRecord("a", 1)); err != nil {
		t.Fatalf("Create over an empty file: %v", err)
	}
	if rec, _, err := l.Get(context.Background()); err != nil || rec.HolderIdentity != "a" {
		t.Fatalf("Get after Create = %+v, %v", rec, err)
	}
}
