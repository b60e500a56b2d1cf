// Package git is a lock backend that keeps the leader-election record in a
// git repository: one branch per lock, holding one file, <name>.json.
//
// Every write is an orphan commit (no parent) pushed with the commit id this
// lock last saw as the expected old value of the branch. The server's
// receive-pack compares that old value with the branch under its own ref
// lock before moving it, so the server does the compare-and-swap: a lost race
// is rejected by the server, and reported as a conflict (lock.IsConflict).
// Creation pushes with the all-zero old value, which the server refuses when
// the branch exists.
//
// The branch therefore always holds exactly one commit, and the objects a
// renewal replaces become unreachable on the server, for `git gc` to prune.
// The client keeps no repository: each read fetches only the lock branch,
// depth 1, into memory that is dropped afterwards, and a read that finds the
// commit it already knows fetches nothing.
//
// Transports: https and http (token or basic auth), ssh (key file or
// ssh-agent), git:// (git daemon) and local paths (which run the local
// git-receive-pack). See docs/backends/git.md for costs and server settings.
package git

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection/lock"
)

// DefaultBranchPrefix is where lock branches live unless Options.Branch says
// otherwise: refs/heads/leaderelection/<name>.
const DefaultBranchPrefix = "refs/heads/leaderelection/"

// Options describe one lock. URL and Name are required.
type Options struct {
	// URL of the repository: https://host/org/repo.git, ssh://git@host/repo.git,
	// git@host:repo.git, git://host/repo.git, file:///path or a local path.
	// Credentials in the URL are used but never logged or shown by Describe;
	// prefer the fields below.
	URL string
	// Name of the lock. The record is the file <Name>.json. Letters, digits,
	// '.', '_' and '-'.
	Name string
	// Branch holding the record; default refs/heads/leaderelection/<Name>.
	// A short name ("locks/a") is taken as refs/heads/locks/a. Give every lock
	// its own branch: a write replaces the whole branch.
	Branch string
	// Identity of this candidate (the holder identity it writes); empty
	// means lock.DefaultIdentity() ($POD_NAME, else "<hostname>_<pid>").
	Identity string

	// Auth overrides the fields below with any go-git auth method.
	Auth transport.AuthMethod
	// Username and Password: HTTP basic auth. For GitHub and most forges use
	// an access token as Password (any Username, e.g. "x-access-token").
	// For ssh URLs, Username is the login (default: from the URL, else "git").
	Username, Password string
	// Token: an HTTP bearer token (Authorization: Bearer ...).
	Token string
	// SSHKeyFile: a private key for ssh URLs, with SSHKeyPassphrase if it is
	// encrypted. Without it, ssh URLs use the agent at $SSH_AUTH_SOCK.
	SSHKeyFile, SSHKeyPassphrase string
	// SSHKnownHosts: known_hosts files to check the server's key against
	// (default: $SSH_KNOWN_HOSTS, else ~/.ssh/known_hosts and
	// /etc/ssh/ssh_known_hosts).
	SSHKnownHosts []string
	// HTTPClient for http(s) URLs (custom CAs, proxies); default
	// http.DefaultTransport. Request deadlines come from each call's context.
	HTTPClient *http.Client

	// Logger receives V(4) traces of store calls; never credentials.
	Logger klog.Logger
}

// Lock is a leader-election lock on a git branch. It implements lock.Interface.
// It is safe for concurrent use, but like every lock it is meant for one
// candidate.
type Lock struct {
	identity string
	name     string
	file     string
	branch   plumbing.ReferenceName
	desc     string
	remote   *remote
	log      klog.Logger

	// marker is the ref that shows a record was once written: every
	// write makes sure it exists first, and deleting the branch leaves it
	// (see markWritten).
	marker plumbing.ReferenceName

	mu   sync.Mutex
	seen plumbing.Hash // commit last read or written; zero: none
	raw  []byte        // the record in seen, for reads that find seen unchanged
	// marked: this handle has seen the marker or made sure of it; from
	// then on it never reports the lock new.
	marked bool
	// readNever: this handle's last Get found that no record was ever
	// written. Its Create then succeeds only if that is still so.
	readNever bool
}

var _ lock.Interface = (*Lock)(nil)

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9._-]*$`)

// New checks opts and returns a lock. It does not contact the server; ctx is
// for the signature every backend shares.
func New(ctx context.Context, opts Options) (*Lock, error) {
	cfg := opts
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("git lock: %w", err)
	}
	if cfg.URL == "" {
		return nil, errors.New("git lock: URL is required")
	}
	if cfg.Name == "" {
		return nil, errors.New("git lock: Name is required")
	}
	if !nameRE.MatchString(cfg.Name) || strings.HasSuffix(cfg.Name, ".lock") || strings.Contains(cfg.Name, "..") {
		return nil, fmt.Errorf("git lock: Name %q: use letters, digits, '.', '_' and '-', not ending in .lock", cfg.Name)
	}
	if cfg.Identity == "" {
		cfg.Identity = lock.DefaultIdentity()
	}
	branch := plumbing.ReferenceName(DefaultBranchPrefix + cfg.Name)
	if cfg.Branch != "" {
		branch = plumbing.ReferenceName(cfg.Branch)
		if !strings.HasPrefix(cfg.Branch, "refs/") {
			branch = plumbing.NewBranchReferenceName(cfg.Branch)
		}
	}
	if err := branch.Validate(); err != nil {
		return nil, fmt.Errorf("git lock: Branch %q: %w", cfg.Branch, err)
	}
	r, err := newRemote(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Logger.GetSink() == nil {
		cfg.Logger = klog.Background()
	}
	return &Lock{
		identity: cfg.Identity,
		name:     cfg.Name,
		file:     cfg.Name + ".json",
		branch:   branch,
		marker:   MarkerRef(branch),
		desc:     r.display + "#" + branch.String(),
		remote:   r,
		log:      cfg.Logger,
	}, nil
}

// Get reads the record on the branch and remembers its commit.
func (l *Lock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	// A branch can move between listing it and fetching its commit; a
	// stateless server (smart HTTP) then refuses the commit it no longer
	// advertises. Read again in that case.
	for attempt := 1; ; attempt++ {
		rec, raw, err := l.get(ctx)
		if err == nil || !errors.Is(err, errMoved) || attempt == 3 {
			return rec, raw, l.remote.scrub(err)
		}
	}
}

var errMoved = errors.New("branch moved while fetching")

func (l *Lock) get(ctx context.Context) (*lock.Record, []byte, error) {
	start := time.Now()
	l.mu.Lock()
	cached, cachedRaw := l.seen, l.raw
	l.mu.Unlock()
	head, raw, marked, err := l.remote.read(ctx, l.branch, l.marker, l.file, cached)
	l.log.V(4).Info("git lock get", "lock", l.desc, "commit", head.String(), "took", time.Since(start), "err", l.remote.scrub(err))
	l.mu.Lock()
	l.marked = l.marked || marked
	l.readNever = errors.Is(err, errNoBranch) && !l.marked
	never := l.readNever
	l.mu.Unlock()
	switch {
	case never:
		return nil, nil, lock.NewNeverWritten(l.desc)
	case errors.Is(err, errNoBranch):
		return nil, nil, lock.NewNotFound(l.desc)
	case errors.Is(err, errCorruptCommit):
		return nil, nil, lock.NewCorrupt(fmt.Sprintf("%s: %s in commit %s", l.desc, l.file, head), err)
	case err != nil:
		return nil, nil, fmt.Errorf("%s: get: %w", l.desc, err)
	}
	if raw == nil { // unchanged since we last saw it
		raw = cachedRaw
	}
	var rec lock.Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, nil, lock.NewCorrupt(fmt.Sprintf("%s: %s in commit %s", l.desc, l.file, head), err)
	}
	l.mu.Lock()
	l.seen, l.raw = head, raw
	l.mu.Unlock()
	return &rec, append([]byte(nil), raw...), nil
}

// MarkerRef is the ref that shows a record of the lock on branch was once
// written: refs/leaderelection-written/ followed by branch without its
// refs/ prefix (refs/leaderelection-written/heads/leaderelection/<name>
// by default). Every write makes sure it exists before it writes the
// branch, and nothing deletes it, so a deleted branch is told apart from a
// lock that never had a record: Get reports the latter with
// lock.ErrNeverWritten, and the first candidate leads at once. Deleting
// the marker too resets the lock to new.
func MarkerRef(branch plumbing.ReferenceName) plumbing.ReferenceName {
	return plumbing.ReferenceName("refs/leaderelection-written/" + strings.TrimPrefix(branch.String(), "refs/"))
}

// Create writes rec if the branch does not exist. If this handle's last
// Get found that no record was ever written (lock.ErrNeverWritten), Create
// succeeds only if that is still so: it creates the marker first, and a
// marker that exists by then (a record was written since, and perhaps
// deleted again) is a conflict.
func (l *Lock) Create(ctx context.Context, rec lock.Record) error {
	return l.remote.scrub(l.write(ctx, "create", plumbing.ZeroHash, rec))
}

// Update writes rec if the branch still holds the commit this lock last read
// or wrote.
func (l *Lock) Update(ctx context.Context, rec lock.Record) error {
	l.mu.Lock()
	seen := l.seen
	l.mu.Unlock()
	if seen.IsZero() {
		return fmt.Errorf("%s: update before get or create", l.desc)
	}
	return l.remote.scrub(l.write(ctx, "update", seen, rec))
}

func (l *Lock) write(ctx context.Context, op string, old plumbing.Hash, rec lock.Record) error {
	start := time.Now()
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("%s: encode record: %w", l.desc, err)
	}
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return fmt.Errorf("%s: %w", l.desc, err)
	}
	// The nonce makes every commit unique, so the branch never returns to a
	// commit id a stale writer still holds (no ABA).
	msg := fmt.Sprintf("leaderelection %s: holder %q, transitions %d\n\nNonce: %s\n",
		l.name, rec.HolderIdentity, rec.LeaderTransitions, hex.EncodeToString(nonce[:]))
	c, err := newCommit(l.file, raw, l.identity, msg, start)
	if err != nil {
		return fmt.Errorf("%s: %s: %w", l.desc, op, err)
	}
	if err := l.markWritten(ctx, op, old, c); err != nil {
		return err
	}
	err = l.remote.push(ctx, l.branch, old, c)
	l.log.V(4).Info("git lock "+op, "lock", l.desc, "old", old.String(), "new", c.hash.String(), "took", time.Since(start), "err", l.remote.scrub(err))
	switch {
	case errors.Is(err, errRejected):
		if err = l.rejected(ctx, op, old, c.hash, err); err != nil {
			// The local state is only the commit id last seen; it stays
			// as it was, so a retry without a fresh Get loses again
			// rather than overwriting the winner.
			return err
		}
	case err != nil:
		// The push may or may not have landed; if it did, the next Update
		// from the old commit is refused and a Get resynchronises.
		return fmt.Errorf("%s: %s: %w", l.desc, op, err)
	}
	l.mu.Lock()
	l.seen, l.raw, l.readNever = c.hash, raw, false
	l.mu.Unlock()
	return nil
}

// markWritten makes sure the marker ref exists before the branch is
// written, pointing it at c (the first record commit, which it keeps): a
// branch that is then deleted is a deletion, after which candidates wait
// out a lease, while a lock whose marker was never made provably never had
// a record. A Create after a Get that found no record ever written
// (readNever) must create the marker itself: if it exists by now, a record
// was written meanwhile, and the Create is a conflict. Checked until this
// handle has seen or made the marker once (it is never deleted but to
// reset the lock), so that records written before markers existed get one.
func (l *Lock) markWritten(ctx context.Context, op string, old plumbing.Hash, c *commit) error {
	l.mu.Lock()
	marked, never := l.marked, l.readNever && old.IsZero()
	l.mu.Unlock()
	if marked {
		return nil
	}
	err := l.remote.push(ctx, l.marker, plumbing.ZeroHash, c)
	if errors.Is(err, errRejected) {
		if _, herr := l.remote.head(ctx, l.marker); herr != nil {
			return fmt.Errorf("%s: %s: creating the marker %s that a record was written: %w; re-reading it: %w", l.desc, op, l.marker, err, herr)
		}
		if never {
			l.mu.Lock()
			l.marked = true
			l.mu.Unlock()
			return lock.NewConflict(l.desc, fmt.Errorf("a record was written (and deleted) since this handle found none had ever been: %s exists", l.marker))
		}
		err = nil
	}
	if err != nil {
		return fmt.Errorf("%s: %s: creating the marker %s that a record was written: %w", l.desc, op, l.marker, err)
	}
	l.mu.Lock()
	l.marked = true
	l.mu.Unlock()
	return nil
}

// rejected decides what a refused push means from the branch as the server
// holds it afterwards, not from the server's wording: the branch is not at
// the expected old commit (or exists when it was to be created), so
// another writer won: a conflict; the branch is gone when an update
// expected it: not-found (the record was deleted; Update never re-creates
// it); the branch is still where the push expected it: the server refused
// for another reason (a hook, branch protection, a concurrent push holding
// the ref lock), a plain error.
func (l *Lock) rejected(ctx context.Context, op string, old, pushed plumbing.Hash, rejection error) error {
	now, err := l.remote.head(ctx, l.branch)
	switch {
	case errors.Is(err, errNoBranch) && old.IsZero():
		return fmt.Errorf("%s: %s: %w (the branch does not exist, as the push expected)", l.desc, op, rejection)
	case errors.Is(err, errNoBranch):
		return lock.NewNotFound(fmt.Sprintf("%s: %s: the branch was deleted (%v)", l.desc, op, rejection))
	case err != nil:
		return fmt.Errorf("%s: %s: %w; re-reading the branch to tell why: %w", l.desc, op, rejection, err)
	case now == pushed:
		return nil // it landed after all
	case now != old:
		return lock.NewConflict(l.desc, fmt.Errorf("branch at %s, expected %s: %w", now, describeOld(old), rejection))
	default:
		return fmt.Errorf("%s: %s: %w (the branch is still at %s)", l.desc, op, rejection, now)
	}
}

// describeOld names an expected old value in errors.
func describeOld(old plumbing.Hash) string {
	if old.IsZero() {
		return "no branch"
	}
	return old.String()
}

// RecordEvent does nothing: a git repository has no event sink.
func (l *Lock) RecordEvent(string) {}

// Identity returns the candidate identity.
func (l *Lock) Identity() string { return l.identity }

// Describe names the lock as <url without credentials>#<branch>.
func (l *Lock) Describe() string { return l.desc }
