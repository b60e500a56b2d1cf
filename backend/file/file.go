//go:build unix

// Package file is the zero-infrastructure lock: a record in a local file,
// guarded by flock, for candidates on one host.
//
// The record lives in PATH as JSON together with a version counter; writers
// take an exclusive flock on PATH.lock, compare the counter with the one they
// last saw (compare-and-swap), and replace PATH atomically (temporary file,
// fsync, rename, fsync of the directory, so that a power loss cannot revert
// the rename). Readers take a shared flock, so they never see a torn
// write. A record created after a deletion starts at a random version, so
// that a version read before the deletion never matches again.
//
// Candidates may run as different users: the record is written with
// Options.FileMode (default 0644) and the flock file is opened read-only,
// so any user who can read both files and write the directory can take
// over. See docs/backends/file.md for group setups. Changes are watched with inotify (fsnotify), falling back to
// polling where inotify is unavailable.
//
// flock works between processes on one host (Unix only). On network file systems its
// semantics vary; use a networked backend there.
package file

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/b3df926d/leaderelection/lock"
)

// Options configure a Lock. Path is required; the zero value of every other
// field is a sensible default.
type Options struct {
	// Path is the record file, shared by the candidates on this host. Its
	// directory must exist and be writable; the file is created on first
	// acquisition, and PATH.lock next to it holds the flock.
	Path string
	// Identity is this candidate's identity; empty means
	// lock.DefaultIdentity() ($POD_NAME, else "<hostname>_<pid>", unique
	// among the processes on this host).
	Identity string

	// PollInterval is how often the watcher checks the file when inotify
	// is unavailable (default 500ms).
	PollInterval time.Duration
	// LockRetry is how often a call waiting for another process's flock
	// tries again (default 2ms). Calls give up when their context ends.
	LockRetry time.Duration
	// FileMode is the permission of the record file each write leaves
	// (default 0644), set exactly, whatever the umask. Candidates running
	// as other users must be able to read it (and to write the
	// directory): 0644 lets every local user read the record; 0640 or
	// 0660 with a shared group limits that to the group. The owner must
	// be able to read and write it.
	FileMode os.FileMode
}

// DefaultFileMode is the record file's permission unless Options.FileMode
// says otherwise.
const DefaultFileMode os.FileMode = 0o644

// Lock is a lock.Interface and lock.Watcher on a local file.
type Lock struct {
	path     string
	lockPath string
	// writtenPath is the marker that a record was once written (see
	// markWritten): it outlives the record's deletion.
	writtenPath string
	identity    string
	opts        Options
	// syncDir makes a rename in dir durable; a field so that the package's
	// tests can observe it (see TestWriteSyncsDirectoryAfterRename).
	syncDir func(dir string) error
	// noInotify makes Changes poll, as where inotify is unavailable; set
	// by the package's tests only.
	noInotify bool
	// pollGate, if set, holds the polling watcher back until it is
	// closed: tests use it to write before the watcher's goroutine runs.
	pollGate chan struct{}

	mu      sync.Mutex
	version uint64 // last version seen or written; 0: none
	// readNever: this handle's last Get found that no record was ever
	// written. Its Create then succeeds only if that is still so.
	readNever bool
}

var (
	_ lock.Interface = (*Lock)(nil)
	_ lock.Watcher   = (*Lock)(nil)
)

// stored is the file's content.
type stored struct {
	Version uint64      `json:"version"`
	Record  lock.Record `json:"record"`
}

// New returns a lock on the record file opts.Path. It checks that the
// directory exists and is writable, so a misconfigured path is an error here
// rather than a candidate that can never acquire.
func New(ctx context.Context, opts Options) (*Lock, error) {
	path := opts.Path
	if path == "" {
		return nil, errors.New("file lock: Options.Path must not be empty")
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("file lock %s: %w", path, err)
	}
	identity := opts.Identity
	if identity == "" {
		identity = lock.DefaultIdentity()
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("file lock %s: %w", path, err)
	}
	dir := filepath.Dir(abs)
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("file lock %s: lock directory: %w", abs, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("file lock %s: %s is not a directory", abs, dir)
	}
	if fi, err := os.Stat(abs); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("file lock %s: is a directory", abs)
	}
	if opts.FileMode == 0 {
		opts.FileMode = DefaultFileMode
	}
	if opts.FileMode&^os.ModePerm != 0 || opts.FileMode&0o600 != 0o600 {
		return nil, fmt.Errorf("file lock %s: Options.FileMode %#o: want permission bits only (at most 0777), with owner read and write (0600)", abs, uint32(opts.FileMode))
	}
	// Probe what every write needs, for a clear error now rather than a
	// candidate that can never acquire: the flock file opens, and the
	// directory takes a new file (the temporary file each write renames).
	f, err := os.OpenFile(abs+".lock", os.O_RDONLY|os.O_CREATE, opts.FileMode)
	if err != nil {
		return nil, fmt.Errorf("file lock %s: cannot open the lock file: %w", abs, err)
	}
	f.Close()
	probe, err := os.CreateTemp(dir, "."+filepath.Base(abs)+".probe-*")
	if err != nil {
		return nil, fmt.Errorf("file lock %s: lock directory %s is not writable: %w", abs, dir, err)
	}
	probe.Close()
	os.Remove(probe.Name())
	if opts.PollInterval <= 0 {
		opts.PollInterval = 500 * time.Millisecond
	}
	if opts.LockRetry <= 0 {
		opts.LockRetry = 2 * time.Millisecond
	}
	return &Lock{path: abs, lockPath: abs + ".lock", writtenPath: abs + ".written", identity: identity, opts: opts, syncDir: syncDir}, nil
}

// Identity returns the candidate identity.
func (l *Lock) Identity() string { return l.identity }

// Describe names the record file, as file:///abs/path.
func (l *Lock) Describe() string { return "file://" + l.path }

// RecordEvent does nothing: a file has no event sink. The elector logs.
func (l *Lock) RecordEvent(string) {}

// Get reads the record and remembers its version.
func (l *Lock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	unlock, err := l.flock(ctx, syscall.LOCK_SH)
	if err != nil {
		return nil, nil, err
	}
	defer unlock()
	st, raw, err := l.read()
	l.mu.Lock()
	l.readNever = errors.Is(err, lock.ErrNeverWritten)
	if err == nil {
		l.version = st.Version
	}
	l.mu.Unlock()
	if err != nil {
		return nil, nil, err
	}
	return &st.Record, raw, nil
}

// Create writes rec if no record exists. If this handle's last Get found
// that no record was ever written (lock.ErrNeverWritten), Create succeeds
// only if that is still true: a candidate that leads at once on that proof
// must not create the record after another's was written and deleted.
func (l *Lock) Create(ctx context.Context, rec lock.Record) error {
	l.mu.Lock()
	never := l.readNever
	l.mu.Unlock()
	return l.write(ctx, rec, func(cur *stored, err error) (uint64, error) {
		switch {
		case never && lock.IsNotFound(err) && !errors.Is(err, lock.ErrNeverWritten):
			return 0, lock.NewConflict(l.Describe(), errors.New("a record was written (and deleted) since this handle found none had ever been"))
		case lock.IsNotFound(err):
			v, err := firstVersion()
			if err != nil {
				return 0, fmt.Errorf("%s: create: %w", l.Describe(), err)
			}
			return v, nil
		case err != nil:
			return 0, err
		default:
			return 0, lock.NewConflict(l.Describe(), errors.New("record exists"))
		}
	})
}

// Update writes rec if the file still holds the version this lock last saw.
func (l *Lock) Update(ctx context.Context, rec lock.Record) error {
	l.mu.Lock()
	seen := l.version
	l.mu.Unlock()
	if seen == 0 {
		return fmt.Errorf("%s: update before get or create", l.Describe())
	}
	return l.write(ctx, rec, func(cur *stored, err error) (uint64, error) {
		switch {
		case err != nil:
			return 0, err
		case cur.Version != seen:
			return 0, lock.NewConflict(l.Describe(), fmt.Errorf("version %d, expected %d", cur.Version, seen))
		default:
			return seen + 1, nil
		}
	})
}

// write takes the exclusive flock, lets check decide the new version from the
// current content, and replaces the file atomically.
func (l *Lock) write(ctx context.Context, rec lock.Record, check func(*stored, error) (uint64, error)) error {
	unlock, err := l.flock(ctx, syscall.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	cur, _, rerr := l.read()
	version, err := check(cur, rerr)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", l.Describe(), err)
	}
	data, err := json.Marshal(stored{Version: version, Record: rec})
	if err != nil {
		return fmt.Errorf("%s: encode record: %w", l.Describe(), err)
	}
	if err := l.markWritten(); err != nil {
		return err
	}
	if err := l.replace(data); err != nil {
		return err
	}
	l.mu.Lock()
	l.version, l.readNever = version, false
	l.mu.Unlock()
	return nil
}

// writtenMarker is the content of the marker file.
const writtenMarker = "A record of this lock has been written. While this file exists, a candidate that finds the record missing waits out a lease (it may have been deleted under a working leader); without it, the first candidate leads at once.\n"

// markWritten makes sure the marker that a record was once written exists
// before a record is: a record file that is then removed (rm, an
// operator's reset) is a deletion, after which candidates wait out a
// lease, while a lock whose marker was never made provably never had a
// record, and its first candidate leads at once. Checked on every write
// (one stat), so that records written before the marker existed get one.
// The caller holds the exclusive flock. The marker lives in the record's
// directory, whose sync after the record's rename makes both durable.
func (l *Lock) markWritten() error {
	if _, err := os.Stat(l.writtenPath); err == nil {
		return nil
	}
	err := os.WriteFile(l.writtenPath, []byte(writtenMarker), l.opts.FileMode)
	if err == nil {
		err = os.Chmod(l.writtenPath, l.opts.FileMode)
	}
	if err != nil {
		return fmt.Errorf("%s: write: marking the lock as written (%s): %w", l.Describe(), l.writtenPath, err)
	}
	return nil
}

// notFound is the error for a missing record: lock.ErrNeverWritten when
// the marker shows that no record was ever written, plain not-found
// otherwise (and when the marker cannot be checked).
func (l *Lock) notFound() error {
	if _, err := os.Lstat(l.writtenPath); errors.Is(err, fs.ErrNotExist) {
		return lock.NewNeverWritten(l.Describe())
	}
	return lock.NewNotFound(l.Describe())
}

// read decodes the file. The caller holds the flock.
func (l *Lock) read() (*stored, []byte, error) {
	raw, err := os.ReadFile(l.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, l.notFound()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%s: read: %w", l.Describe(), err)
	}
	if len(raw) == 0 {
		// An empty file (touch, or a directory created ahead) is no
		// record: the writer replaces files whole by rename, so it never
		// leaves one.
		return nil, nil, l.notFound()
	}
	var st stored
	if err := json.Unmarshal(raw, &st); err != nil {
		return nil, nil, lock.NewCorrupt(l.Describe(), err)
	}
	if st.Version == 0 {
		return nil, nil, lock.NewCorrupt(l.Describe(), errors.New("missing version"))
	}
	return &st, raw, nil
}

// firstVersion is the version of a newly created record: random, so that
// a version a handle read before the record was deleted does not match the
// new record's (a counter restarting at 1 would let a stale Update
// overwrite it). It stays below 2^53, exact in any JSON reader, and leaves
// room to count up.
func firstVersion() (uint64, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(b[:])>>12 | 1, nil
}

// replace writes data to a temporary file in the same directory, syncs it,
// renames it over the record and syncs the directory, so readers see the
// old or the new record, never a torn one, and once replace returns, a
// crash or power loss cannot bring the old record back.
func (l *Lock) replace(data []byte) error {
	dir := filepath.Dir(l.path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(l.path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("%s: %w", l.Describe(), err)
	}
	name := tmp.Name()
	// CreateTemp makes the file 0600; Chmod sets the mode exactly,
	// whatever the umask.
	werr := tmp.Chmod(l.opts.FileMode)
	if werr == nil {
		_, werr = tmp.Write(data)
	}
	if werr == nil {
		werr = tmp.Sync()
	}
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(name, l.path)
	}
	if werr != nil {
		os.Remove(name)
		return fmt.Errorf("%s: write: %w", l.Describe(), werr)
	}
	// The rename is visible now but lives in the directory, which is not
	// on disk until synced. If the sync fails the write's fate is
	// unknown: the error says so, and this handle keeps the version it
	// had, so its next Update re-reads.
	if err := l.syncDir(dir); err != nil {
		return fmt.Errorf("%s: write: syncing directory %s after the rename: %w", l.Describe(), dir, err)
	}
	return nil
}

// syncDir fsyncs the directory dir. File systems that cannot sync a
// directory (EINVAL, ENOTSUP: some FUSE and network file systems) offer
// nothing better, and are not an error.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, syscall.EINVAL) || errors.Is(err, syscall.ENOTSUP) {
		return nil
	}
	return err
}

// flock takes a flock of the given kind on the lock file, retrying until ctx
// ends, and returns the function that drops it.
func (l *Lock) flock(ctx context.Context, how int) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", l.Describe(), err)
	}
	// Read-only is enough for flock, so a lock file created by another
	// user (with any umask) serves every user who can read it.
	f, err := os.OpenFile(l.lockPath, os.O_RDONLY|os.O_CREATE, l.opts.FileMode)
	if err != nil {
		return nil, fmt.Errorf("%s: open lock file: %w", l.Describe(), err)
	}
	var retry *time.Ticker
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil // closing drops the flock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("%s: flock: %w", l.Describe(), err)
		}
		if retry == nil {
			retry = time.NewTicker(l.opts.LockRetry)
			defer retry.Stop()
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("%s: waiting for the file lock: %w", l.Describe(), ctx.Err())
		case <-retry.C:
		}
	}
}
