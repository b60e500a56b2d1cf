package git_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/b3df926d/leaderelection/backend/git"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// harness makes locks on one bare repository served by real git.
type harness struct {
	repo  *testserver.GitRepo
	url   string
	auth  func(*git.Options)
	proxy *testserver.Proxy
}

func (h *harness) config(name, identity string) git.Options {
	return config(h.url, h.auth, name, identity)
}

// config is a lock's configuration for the repository at url.
func config(url string, auth func(*git.Options), name, identity string) git.Options {
	cfg := git.Options{URL: url, Name: name, Identity: identity}
	if auth != nil {
		auth(&cfg)
	}
	return cfg
}

func (h *harness) NewLock(t *testing.T, name, identity string) lock.Interface {
	t.Helper()
	return h.newLock(t, name, identity)
}

func (h *harness) newLock(t testing.TB, name, identity string) *git.Lock {
	t.Helper()
	l, err := git.New(context.Background(), h.config(name, identity))
	if err != nil {
		t.Fatalf("git.New: %v", err)
	}
	return l
}

func branch(name string) string { return git.DefaultBranchPrefix + name }

// Corrupt commits a record file that is not JSON straight into the bare
// repository, as a stray writer would.
func (h *harness) Corrupt(t *testing.T, name string) {
	t.Helper()
	h.repo.Git(t, "update-ref", branch(name), h.commitRecord(t, name, []byte("{not json")))
}

// commitRecord makes an orphan commit holding content as name's record file
// in the bare repository, with git itself, and returns its id.
func (h *harness) commitRecord(t *testing.T, name string, content []byte) string {
	t.Helper()
	blob := h.repo.GitInput(t, content, "hash-object", "-w", "--stdin")
	tree := h.repo.GitInput(t, fmt.Appendf(nil, "100644 blob %s\t%s.json\n", blob, name), "mktree")
	return h.repo.Git(t, "commit-tree", tree, "-m", "written by git")
}

func (h *harness) Stored(t *testing.T, name string) []byte {
	t.Helper()
	if _, err := h.repo.TryGit(nil, "rev-parse", "--verify", "--quiet", branch(name)); err != nil {
		return nil
	}
	out, err := h.repo.TryGit(nil, "show", branch(name)+":"+name+".json")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Delete deletes the lock branch on the server, as an operator would.
func (h *harness) Delete(t *testing.T, name string) {
	t.Helper()
	h.repo.Git(t, "update-ref", "-d", branch(name))
}

// blockingHarness reaches the server through a proxy it can stall.
type blockingHarness struct{ *harness }

func (h blockingHarness) Block(*testing.T, string) func() { return h.proxy.Stall() }

// served is a bare repository behind a real git server at addr. Clients
// reach it through proxies (one per harness or per candidate), so tests can
// stall or cut them.
type served struct {
	repo   *testserver.GitRepo
	addr   string
	scheme string // "http", "git" or "ssh"
	auth   func(*git.Options)
	// allow, if set, lets clients reach the server at a new proxy address
	// (ssh: adds the host key for it to known_hosts).
	allow func(t testing.TB, addr string)
}

// proxy starts a proxy to the server and returns it with the repository's
// URL through it.
func (s served) proxy(t testing.TB) (*testserver.Proxy, string) {
	p := testserver.StartProxy(t, s.addr)
	if s.allow != nil {
		s.allow(t, p.Addr())
	}
	user := ""
	if s.scheme == "ssh" {
		user = "git@"
	}
	return p, s.scheme + "://" + user + p.Addr() + "/" + s.repo.Name
}

// config is a lock's configuration for the repository at url, a proxy's.
func (s served) config(url, name, identity string) git.Options {
	return config(url, s.auth, name, identity)
}

func (s served) harness(t testing.TB) blockingHarness {
	p, url := s.proxy(t)
	return blockingHarness{&harness{repo: s.repo, url: url, auth: s.auth, proxy: p}}
}

func serveHTTP(t testing.TB, auth testserver.GitHTTPAuth, setAuth func(*git.Options)) served {
	repo := testserver.NewGitRepo(t)
	return served{repo: repo, addr: repo.ServeHTTP(t, auth), scheme: "http", auth: setAuth}
}

// serveGit251 serves by smart HTTP with refusals worded as git 2.51 and
// later word them.
func serveGit251(t testing.TB) served {
	repo := testserver.NewGitRepo(t)
	repo.Git251Refusals = true
	return served{repo: repo, addr: repo.ServeHTTP(t, testserver.GitHTTPAuth{}), scheme: "http"}
}

func serveDaemon(t testing.TB) served {
	repo := testserver.NewGitRepo(t)
	return served{repo: repo, addr: repo.ServeDaemon(t), scheme: "git"}
}

// serveSSH serves the repository over ssh and gives locks a known_hosts
// file holding the server's host key, and the client key in a private key
// file or, with agent, in an ssh-agent at $SSH_AUTH_SOCK.
func serveSSH(t testing.TB, agent bool) served {
	repo := testserver.NewGitRepo(t)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	clientKey, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	keyFile, knownHosts := filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	addr, hostKey := repo.ServeSSH(t, clientKey)
	s := served{repo: repo, addr: addr, scheme: "ssh",
		auth: func(c *git.Options) { c.SSHKeyFile, c.SSHKnownHosts = keyFile, []string{knownHosts} },
		allow: func(t testing.TB, addr string) {
			f, err := os.OpenFile(knownHosts, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
			if err == nil {
				_, err = fmt.Fprintln(f, knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostKey))
				err = errors.Join(err, f.Close())
			}
			if err != nil {
				t.Fatal(err)
			}
		},
	}
	if agent {
		t.Setenv("SSH_AUTH_SOCK", testserver.StartSSHAgent(t, priv))
		s.auth = func(c *git.Options) { c.SSHKnownHosts = []string{knownHosts} }
	}
	return s
}

func newHTTPHarness(t testing.TB, auth testserver.GitHTTPAuth, setAuth func(*git.Options)) blockingHarness {
	return serveHTTP(t, auth, setAuth).harness(t)
}

func newDaemonHarness(t testing.TB) blockingHarness { return serveDaemon(t).harness(t) }

func newSSHHarness(t testing.TB, agent bool) blockingHarness { return serveSSH(t, agent).harness(t) }

func newLocalHarness(t testing.TB) *harness {
	repo := testserver.NewGitRepo(t)
	return &harness{repo: repo, url: repo.Dir}
}

func TestConformanceSmartHTTPTokenAuth(t *testing.T) {
	h := newHTTPHarness(t, testserver.GitHTTPAuth{Token: "s3cret-token"}, func(c *git.Options) { c.Token = "s3cret-token" })
	locktest.RunConformanceTests(t, h, locktest.Options{})
}

func TestConformanceGitDaemon(t *testing.T) {
	locktest.RunConformanceTests(t, newDaemonHarness(t), locktest.Options{})
}

func TestConformanceSSHKeyFile(t *testing.T) {
	locktest.RunConformanceTests(t, newSSHHarness(t, false), locktest.Options{})
}

func TestConformanceSSHAgent(t *testing.T) {
	locktest.RunConformanceTests(t, newSSHHarness(t, true), locktest.Options{})
}

func TestConformanceLocalPath(t *testing.T) {
	locktest.RunConformanceTests(t, newLocalHarness(t), locktest.Options{})
}

func TestBasicAuthIsSentAndWrongCredentialsAreNoConflict(t *testing.T) {
	h := newHTTPHarness(t, testserver.GitHTTPAuth{Username: "ci", Password: "pa55word"},
		func(c *git.Options) { c.Username, c.Password = "ci", "pa55word" })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := locktest.Name(t)
	a := h.NewLock(t, name, "a")
	if err := a.Create(ctx, locktest.NewRecord("a", 1)); err != nil {
		t.Fatalf("Create with basic auth: %v", err)
	}
	h.auth = func(c *git.Options) { c.Username, c.Password = "ci", "wrong-password" }
	b := h.NewLock(t, name, "b")
	_, _, err := b.Get(ctx)
	if err == nil || lock.IsConflict(err) || lock.IsNotFound(err) {
		t.Fatalf("Get with a wrong password returned %v, want a plain error", err)
	}
	if strings.Contains(err.Error(), "wrong-password") {
		t.Fatalf("error %q shows the password", err)
	}
	if err := b.Create(ctx, locktest.NewRecord("b", 1)); err == nil || lock.IsConflict(err) {
		t.Fatalf("Create with a wrong password returned %v, want a plain error", err)
	}
}

// Credentials written into the URL are used, and never shown: not by
// Describe, not in errors (Go's HTTP client quotes request URLs in its
// errors, user name included).
func TestCredentialsInURLAreUsedAndNeverShown(t *testing.T) {
	repo := testserver.NewGitRepo(t)
	addr := repo.ServeHTTP(t, testserver.GitHTTPAuth{Username: "ci", Password: "pa55word"})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	l, err := git.New(context.Background(), git.Options{URL: "http://ci:pa55word@" + addr + "/" + repo.Name, Name: "a", Identity: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Create(ctx, locktest.NewRecord("x", 1)); err != nil {
		t.Fatalf("Create with credentials in the URL: %v", err)
	}
	closed := fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t))
	for _, u := range []string{
		"http://ci:pa55word@" + closed + "/locks.git",
		"http://t0ken-as-user@" + closed + "/locks.git",
		"http://ci:wrong-pa55word@" + addr + "/" + repo.Name,
	} {
		l, err := git.New(context.Background(), git.Options{URL: u, Name: "a", Identity: "x"})
		if err != nil {
			t.Fatal(err)
		}
		_, _, gerr := l.Get(ctx)
		cerr := l.Create(ctx, locktest.NewRecord("x", 1))
		for _, err := range []error{gerr, cerr} {
			if err == nil || lock.IsConflict(err) {
				t.Fatalf("%s: got %v, want a plain error", l.Describe(), err)
			}
			for _, secret := range []string{"pa55word", "t0ken"} {
				if strings.Contains(err.Error(), secret) || strings.Contains(l.Describe(), secret) {
					t.Errorf("error %q or Describe() %q shows a credential", err, l.Describe())
				}
			}
		}
	}
}

// A rejected push must leave the handle usable: after losing a race it
// reads and then wins, with no local repository state to wedge.
func TestLostPushThenGetThenUpdateWorks(t *testing.T) {
	h := newDaemonHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := locktest.Name(t)
	a, b := h.NewLock(t, name, "a"), h.NewLock(t, name, "b")
	if err := a.Create(ctx, locktest.NewRecord("a", 1)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := b.Get(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := a.Update(ctx, locktest.NewRecord("a", 1)); err != nil {
			t.Fatalf("renew %d: %v", i, err)
		}
		for j := range 2 { // twice: a retry without a Get loses again
			if err := b.Update(ctx, locktest.NewRecord("b", 2)); !lock.IsConflict(err) {
				t.Fatalf("stale update %d/%d: %v, want a conflict", i, j, err)
			}
		}
		if _, _, err := b.Get(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Update(ctx, locktest.NewRecord("b", 2)); err != nil {
		t.Fatalf("update after a fresh Get: %v", err)
	}
	if err := b.Create(ctx, locktest.NewRecord("b", 3)); !lock.IsConflict(err) {
		t.Fatalf("Create over an existing branch: %v, want a conflict", err)
	}
}

// Renewals replace the branch's only commit: the branch never holds more
// than one commit, and the objects reachable in the repository stay the
// same in number however often the leader renews. What a renewal leaves
// behind is unreachable, for git gc.
func TestRenewalsKeepOneCommitAndReachableObjectsConstant(t *testing.T) {
	renewals := 500
	if testing.Short() {
		renewals = 50
	}
	h := newHTTPHarness(t, testserver.GitHTTPAuth{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	name := locktest.Name(t)
	l := h.NewLock(t, name, "a")
	rec := locktest.NewRecord("a", 1)
	if err := l.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	// The marker ref (git.MarkerRef) keeps the first commit: count from
	// the first renewal on.
	rec.RenewTime.Time = rec.RenewTime.Add(time.Second)
	if err := l.Update(ctx, rec); err != nil {
		t.Fatal(err)
	}
	reachable := func() string { return h.repo.Git(t, "rev-list", "--objects", "--all", "--count") }
	before := reachable()
	for i := range renewals {
		rec.RenewTime.Time = rec.RenewTime.Add(time.Second)
		if err := l.Update(ctx, rec); err != nil {
			t.Fatalf("renewal %d: %v", i, err)
		}
	}
	if got := h.repo.Git(t, "rev-list", "--count", branch(name)); got != "1" {
		t.Errorf("branch holds %s commits after %d renewals, want 1", got, renewals)
	}
	if after := reachable(); after != before {
		t.Errorf("reachable objects grew from %s to %s over %d renewals", before, after, renewals)
	}
	t.Logf("%d renewals: reachable objects %s before and after; %s",
		renewals, before, strings.ReplaceAll(h.repo.Git(t, "count-objects", "-v"), "\n", ", "))
	got := h.Stored(t, name)
	if !strings.Contains(string(got), rec.RenewTime.UTC().Format(time.RFC3339)) {
		t.Errorf("stored record %s is not the last renewal", got)
	}
}

// The compare-and-swap is the server's: a pre-receive hook moves the branch
// after the client has seen it at the expected commit (so any client-side
// comparison would pass), and receive-pack still refuses the push because
// the branch no longer holds the old value the push names.
func TestServerRefusesPushWhenBranchMovedAfterAdvertisement(t *testing.T) {
	h := newDaemonHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := locktest.Name(t)
	a := h.NewLock(t, name, "a")
	if err := a.Create(ctx, locktest.NewRecord("a", 1)); err != nil {
		t.Fatal(err)
	}
	other, err := json.Marshal(locktest.NewRecord("b", 2))
	if err != nil {
		t.Fatal(err)
	}
	moved := h.commitRecord(t, name, other)
	hook := fmt.Sprintf(`#!/bin/sh
cat >/dev/null
[ -e moved ] && exit 0
touch moved
env -u GIT_QUARANTINE_PATH -u GIT_OBJECT_DIRECTORY -u GIT_ALTERNATE_OBJECT_DIRECTORIES git update-ref %s %s
`, branch(name), moved)
	if err := os.WriteFile(filepath.Join(h.repo.Dir, "hooks", "pre-receive"), []byte(hook), 0o755); err != nil {
		t.Fatal(err)
	}
	err = a.Update(ctx, locktest.NewRecord("a", 1))
	if !lock.IsConflict(err) {
		t.Fatalf("push from a commit the branch left after advertising it: %v, want a conflict", err)
	}
	if got := h.repo.Git(t, "rev-parse", branch(name)); got != moved {
		t.Fatalf("branch at %s, want %s (the hook's commit): the server took the stale push", got, moved)
	}
	if got := string(h.Stored(t, name)); got != string(other) {
		t.Fatalf("stored %s, want %s", got, other)
	}
}

// The commits the lock makes are well-formed for git itself (git fsck
// --strict), whatever the identity holds, and the record keeps the identity
// exactly.
func TestCommitsPassGitFsck(t *testing.T) {
	h := newLocalHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	name := locktest.Name(t)
	odd := "pod <a@b>\nx\x00y ünï"
	l := h.NewLock(t, name, odd)
	if err := l.Create(ctx, locktest.NewRecord(odd, 1)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := l.Update(ctx, locktest.NewRecord(odd, 1)); err != nil {
			t.Fatal(err)
		}
	}
	if rec, _, err := h.NewLock(t, name, "b").Get(ctx); err != nil || rec.HolderIdentity != odd {
		t.Fatalf("Get = %+v, %v; want holder %q", rec, err, odd)
	}
	if out, err := h.repo.TryGit(nil, "fsck", "--strict", "--no-dangling"); err != nil {
		t.Fatalf("git fsck --strict: %v\n%s", err, out)
	}
	if got := h.repo.Git(t, "cat-file", "-t", branch(name)); got != "commit" {
		t.Fatalf("branch points at a %s", got)
	}
}

// An empty Identity is lock.DefaultIdentity(), as for every backend.
func TestEmptyIdentityDefaults(t *testing.T) {
	t.Setenv("POD_NAME", "pod-x")
	l, err := git.New(context.Background(), git.Options{URL: "/tmp/r.git", Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Identity(); got != "pod-x" || got != lock.DefaultIdentity() {
		t.Fatalf("Identity() = %q, want lock.DefaultIdentity() %q", got, lock.DefaultIdentity())
	}
}

func TestNewRejectsBadConfigNamingTheField(t *testing.T) {
	for _, tc := range []struct {
		cfg  git.Options
		want string
	}{
		{git.Options{Name: "a", Identity: "x"}, "URL"},
		{git.Options{URL: "/tmp/r.git", Identity: "x"}, "Name"},
		{git.Options{URL: "/tmp/r.git", Name: "a/b", Identity: "x"}, "Name"},
		{git.Options{URL: "/tmp/r.git", Name: "a.lock", Identity: "x"}, "Name"},
		{git.Options{URL: "/tmp/r.git", Name: "a", Identity: "x", Branch: "bad..branch"}, "Branch"},
		{git.Options{URL: "/tmp/r.git", Name: "a", Identity: "x", Token: "t"}, "Token"},
		{git.Options{URL: "git://h/r.git", Name: "a", Identity: "x", Password: "p"}, "Password"},
		{git.Options{URL: "https://h/r.git", Name: "a", Identity: "x", SSHKeyFile: "/k"}, "SSHKeyFile"},
		{git.Options{URL: "ssh://git@h/r.git", Name: "a", Identity: "x", SSHKeyFile: "/nonexistent/key"}, "SSHKeyFile"},
	} {
		_, err := git.New(context.Background(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

func TestDescribeShowsNoCredentials(t *testing.T) {
	for _, raw := range []string{
		"https://user:hunter2@example.com/org/repo.git",
		"https://hunter2@example.com/org/repo.git",
	} {
		l, err := git.New(context.Background(), git.Options{URL: raw, Name: "a", Identity: "x", Password: "also-secret"})
		if err != nil {
			t.Fatal(err)
		}
		if d := l.Describe(); strings.Contains(d, "hunter2") || strings.Contains(d, "secret") {
			t.Errorf("Describe() = %q shows a credential", d)
		}
		if want := "https://example.com/org/repo.git#refs/heads/leaderelection/a"; l.Describe() != want {
			t.Errorf("Describe() = %q, want %q", l.Describe(), want)
		}
	}
	l, err := git.New(context.Background(), git.Options{URL: "/srv/locks.git", Name: "a", Identity: "x", Branch: "locks/a"})
	if err != nil {
		t.Fatal(err)
	}
	if want := "file:///srv/locks.git#refs/heads/locks/a"; l.Describe() != want {
		t.Errorf("Describe() = %q, want %q", l.Describe(), want)
	}
}

func TestCallsFailCleanlyWhenTheServerIsGone(t *testing.T) {
	u := url.URL{Scheme: "git", Host: fmt.Sprintf("127.0.0.1:%d", testserver.FreePort(t)), Path: "/locks.git"}
	l, err := git.New(context.Background(), git.Options{URL: u.String(), Name: "a", Identity: "x"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = l.Get(ctx)
	if err == nil || lock.IsNotFound(err) || lock.IsConflict(err) || !strings.Contains(err.Error(), l.Describe()) {
		t.Fatalf("Get from a closed port: %v, want a plain error naming %s", err, l.Describe())
	}
	if err := l.Create(ctx, locktest.NewRecord("x", 1)); err == nil || lock.IsConflict(err) {
		t.Fatalf("Create to a closed port: %v, want a plain error", err)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Create to a closed port hung until the deadline: %v", err)
	}
}
