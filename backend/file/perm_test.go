//go:build unix

package file

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// The record file has exactly Options.FileMode (default 0644) after every
// write, whatever the process's umask: candidates running as other users
// must be able to read it. Before, every write left a 0600 file.
func TestRecordFileModeIsExactWhateverTheUmask(t *testing.T) {
	old := syscall.Umask(0o077) // the strictest common umask
	defer syscall.Umask(old)
	for _, tc := range []struct {
		mode, want os.FileMode
	}{{0, 0o644}, {0o660, 0o660}, {0o600, 0o600}} {
		dir := t.TempDir()
		path := filepath.Join(dir, "l.json")
		l, err := New(context.Background(), Options{Path: path, Identity: "a", FileMode: tc.mode})
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if err := l.Create(ctx, locktest.NewRecord("a", 1)); err != nil {
			t.Fatal(err)
		}
		check := func(after string) {
			t.Helper()
			fi, err := os.Stat(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := fi.Mode().Perm(); got != tc.want {
				t.Errorf("FileMode %#o: record mode %#o after %s, want %#o", tc.mode, got, after, tc.want)
			}
		}
		check("Create")
		if err := l.Update(ctx, locktest.NewRecord("a", 1)); err != nil {
			t.Fatal(err)
		}
		check("Update")
	}
}

func TestBadFileModeIsClearError(t *testing.T) {
	for _, mode := range []os.FileMode{0o444, 0o1644, os.ModeDir | 0o755} {
		_, err := New(context.Background(), Options{Path: filepath.Join(t.TempDir(), "l.json"), Identity: "a", FileMode: mode})
		if err == nil || !strings.Contains(err.Error(), "Options.FileMode") {
			t.Errorf("FileMode %v: New returned %v, want an error naming Options.FileMode", mode, err)
		}
	}
}

// Every write fsyncs the record's directory after the rename, so a power
// loss cannot bring the old record back; and a failed directory sync is
// an error, not a silent success.
//
// What this can and cannot prove: a test cannot cut the power, so it
// cannot show that the record survives one (that takes a crash-consistency
// harness such as dm-flakey or LazyFS, below the file system). It shows
// that the sync is made, on the record's directory, after the rename (the
// directory already names the new record when it is synced), on every
// write; that the real sync succeeds on a real directory; and that its
// failure reaches the caller.
func TestWriteSyncsDirectoryAfterRename(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "l.json")
	l, err := New(context.Background(), Options{Path: path, Identity: "a"})
	if err != nil {
		t.Fatal(err)
	}
	var synced []string
	var failWith error
	l.syncDir = func(d string) error {
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("directory synced before the record was renamed into it: %v", err)
		}
		synced = append(synced, d+" "+string(raw))
		if failWith != nil {
			return failWith
		}
		return syncDir(d) // the real one, on a real directory
	}
	ctx := context.Background()
	recs := []lock.Record{locktest.NewRecord("a", 1), locktest.NewRecord("a", 1), locktest.NewRecord("", 1)}
	recs[1].RenewTime.Time = recs[1].RenewTime.Add(time.Second)
	if err := l.Create(ctx, recs[0]); err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs[1:] {
		if err := l.Update(ctx, rec); err != nil {
			t.Fatal(err)
		}
	}
	if len(synced) != len(recs) {
		t.Fatalf("%d directory syncs for %d writes", len(synced), len(recs))
	}
	for i, s := range synced {
		d, raw, _ := strings.Cut(s, " ")
		if d != dir {
			t.Errorf("write %d synced %s, want the record's directory %s", i, d, dir)
		}
		if want := recs[i].RenewTime.UTC().Format(time.RFC3339); !strings.Contains(raw, want) || !strings.Contains(raw, `"holderIdentity":"`+recs[i].HolderIdentity+`"`) {
			t.Errorf("write %d: when the directory was synced the record read %s, want the new record", i, raw)
		}
	}

	failWith = syscall.EIO
	err = l.Update(ctx, locktest.NewRecord("a", 1))
	if err == nil || !strings.Contains(err.Error(), dir) || lock.IsConflict(err) {
		t.Fatalf("Update whose directory sync failed returned %v, want a plain error naming %s", err, dir)
	}
}

// helperEnv, when set, makes TestMain-less re-execution of this test binary
// act as a candidate of its own (see TestCandidateRunningAsAnotherUserTakesOver).
const helperEnv = "LE_FILE_LOCK_TAKEOVER_PATH"

// TestHelperTakeOver is not a test: run with helperEnv set, as another
// user, it takes over the released record at that path.
func TestHelperTakeOver(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process only")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := New(ctx, Options{Path: path, Identity: "other-user"})
	if err != nil {
		t.Fatal(err)
	}
	rec, _, err := l.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if rec.HolderIdentity != "" {
		t.Fatalf("record held by %q, want released", rec.HolderIdentity)
	}
	if err := l.Update(ctx, locktest.NewRecord("other-user", rec.LeaderTransitions+1)); err != nil {
		t.Fatal(err)
	}
}

// A candidate running as another user (another uid, sharing only a group
// with the directory) takes over a record that root created and released,
// with the default FileMode; with FileMode 0600 (the old behaviour) it
// cannot even read it. Needs root, to start the other user's process.
func TestCandidateRunningAsAnotherUserTakesOver(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a process as another user")
	}
	const uid, gid = 54321, 54320 // no such user: nothing but the group is shared
	// The test binary and the lock directory must be reachable by that
	// user: t.TempDir() is 0700, so both go in directories of their own.
	shared, err := os.MkdirTemp("", "le-file-users-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(shared) })
	binDir, lockDir := filepath.Join(shared, "bin"), filepath.Join(shared, "locks")
	for _, d := range []string{binDir, lockDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(shared, 0o755); err != nil {
		t.Fatal(err)
	}
	// A group directory, setgid so that files inherit the group: the
	// setup docs/backends/file.md describes.
	if err := os.Chown(lockDir, 0, gid); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(lockDir, 0o2775); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(binDir, "file.test")
	copyExecutable(t, exe)

	for _, tc := range []struct {
		name   string
		mode   os.FileMode
		takes  bool
		reason string
	}{
		{"default mode", 0, true, ""},
		{"mode 0600", 0o600, false, "permission denied"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(lockDir, strings.ReplaceAll(tc.name, " ", "-")+".json")
			root, err := New(context.Background(), Options{Path: path, Identity: "root", FileMode: tc.mode})
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := root.Create(ctx, locktest.NewRecord("root", 1)); err != nil {
				t.Fatal(err)
			}
			if err := root.Update(ctx, locktest.NewRecord("", 1)); err != nil { // released
				t.Fatal(err)
			}
			cmd := exec.Command(exe, "-test.run=^TestHelperTakeOver$", "-test.v")
			cmd.Env = append(os.Environ(), helperEnv+"="+path)
			cmd.Dir = binDir
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
			out, err := cmd.CombinedOutput()
			if err != nil && strings.Contains(err.Error(), "operation not permitted") {
				t.Skipf("cannot start a process as another user here: %v", err)
			}
			rec, _, gerr := root.Get(ctx)
			if gerr != nil {
				t.Fatal(gerr)
			}
			if tc.takes {
				if err != nil {
					t.Fatalf("the other user's candidate failed: %v\n%s", err, out)
				}
				if rec.HolderIdentity != "other-user" || rec.LeaderTransitions != 2 {
					t.Fatalf("record %+v after the other user's take-over, want holder other-user in term 2", rec)
				}
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid {
					t.Errorf("record owned by %d:%d, want the other user %d:%d", st.Uid, st.Gid, uid, gid)
				}
				// And root takes it back from the other user's file.
				if err := root.Update(ctx, locktest.NewRecord("root", 3)); err != nil {
					t.Fatalf("root's take-over of the other user's record: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(string(out), tc.reason) {
				t.Fatalf("the other user's candidate returned %v, want a failure with %q:\n%s", err, tc.reason, out)
			}
			if rec.HolderIdentity != "" {
				t.Fatalf("record %+v changed", rec)
			}
		})
	}
}

// copyExecutable copies the running test binary to path, mode 0755.
func copyExecutable(t *testing.T, path string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}
