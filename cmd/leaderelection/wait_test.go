package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/poll"
)

// TestRunWaitGivesUpWhileAnotherCopyHoldsTheLock: with --wait, a copy that
// cannot acquire in time exits 75 (EX_TEMPFAIL) with a message naming the
// lock and never runs its command; the holder's job is undisturbed.
func TestRunWaitGivesUpWhileAnotherCopyHoldsTheLock(t *testing.T) {
	dir := t.TempDir()
	lockFile := filepath.Join(dir, "leader.json")
	holder := start(t, dir, "holder", append(append([]string{"run", "--id=holder", "--lock-file=" + lockFile, "--shell"}, fast...),
		"--", `touch "$TEST_DIR/holder.ran"; exec sleep 600`)...)
	poll.Until(t, "the holder's job to start", 30*time.Second, func() bool {
		_, err := os.Stat(filepath.Join(dir, "holder.ran"))
		return err == nil
	})
	waiter := start(t, dir, "waiter", append(append([]string{"run", "--id=waiter", "--lock-file=" + lockFile, "--wait=1s", "--shell"}, fast...),
		"--", `touch "$TEST_DIR/waiter.ran"`)...)
	if code := waiter.wait(t, 60*time.Second); code != exitTimeout {
		t.Fatalf("the waiter's exit status %d, want %d", code, exitTimeout)
	}
	if _, err := os.Stat(filepath.Join(dir, "waiter.ran")); err == nil {
		t.Fatal("the waiter ran its command although it never held the lock")
	}
	if out, _ := os.ReadFile(waiter.log); !strings.Contains(string(out), "not acquired within --wait=1s") || !strings.Contains(string(out), lockFile) {
		t.Fatalf("the waiter's output does not say it gave up waiting on %s:\n%s", lockFile, out)
	}
	if holder.exited() {
		t.Fatal("the holder exited")
	}
	code, st := readStatus(t, "--lock-file="+lockFile)
	if code != exitOK || st.Holder != "holder" {
		t.Fatalf("status %d %+v, want the holder still holding", code, st)
	}
}

// TestRunCorruptRecordEndsWithItsOwnStatus: a corrupt record makes run
// exit 65 (EX_DATAERR) at once, naming the record to delete, rather than
// wait for ever (cron runs would pile up); the record is left as it was.
func TestRunCorruptRecordEndsWithItsOwnStatus(t *testing.T) {
	dir := t.TempDir()
	lockFile := filepath.Join(dir, "leader.json")
	garbage := []byte(`{"version": "seven"`)
	if err := os.WriteFile(lockFile, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	p := start(t, dir, "a", append(append([]string{"run", "--id=a", "--lock-file=" + lockFile, "--shell"}, fast...),
		"--", `touch "$TEST_DIR/ran"`)...)
	if code := p.wait(t, 60*time.Second); code != exitCorrupt {
		t.Fatalf("exit status %d, want %d", code, exitCorrupt)
	}
	out, _ := os.ReadFile(p.log)
	if !strings.Contains(string(out), "corrupt") || !strings.Contains(string(out), "delete it") || !strings.Contains(string(out), lockFile) {
		t.Fatalf("the output does not name the corrupt record %s and say to delete it:\n%s", lockFile, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Fatal("the command ran")
	}
	if b, _ := os.ReadFile(lockFile); string(b) != string(garbage) {
		t.Fatalf("the corrupt record was changed to %q", b)
	}
}

// TestRunWithoutElectionWarns: --leader-elect=false runs the command with
// no election, and says loudly that every copy started so runs it.
func TestRunWithoutElectionWarns(t *testing.T) {
	dir := t.TempDir()
	code, _, stderr := leCommand(t, "run", "--lock-file="+filepath.Join(dir, "leader.json"), "--leader-elect=false", "--", "true")
	if code != exitOK {
		t.Fatalf("exit status %d, want 0; stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stderr, "WARNING: --leader-elect=false") {
		t.Fatalf("no warning that every copy runs the command:\n%s", stderr)
	}
}
