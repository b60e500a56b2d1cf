package testserver

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// GitRepo is a bare repository on disk, served by Debian's git: through
// `git http-backend` (smart HTTP, in-process via net/http/cgi), through
// `git daemon` (git://), or used as a local path. Pushes go to git's own
// receive-pack, which checks each command's old value under the ref lock.
type GitRepo struct {
	// Dir is the bare repository.
	Dir string
	// Name is its directory name, the path under every server's root.
	Name string
	// Git251Refusals, set before ServeHTTP, makes the HTTP server word
	// receive-pack's lost races as git 2.51 and later do ("reference already
	// exists", "reference does not exist", "incorrect old value provided")
	// rather than as Debian's older git does ("failed to update ref",
	// "failed to lock"): a stub of a newer server around the real one.
	// Only the words change; what git accepts and refuses does not.
	Git251Refusals bool
	root           string
	git            string

	mu         sync.Mutex
	daemonPort int
	daemonStop func()
}

// NewGitRepo creates an empty bare repository in a temporary directory,
// with receive-pack enabled over HTTP and automatic gc off (so tests see
// every object a push leaves).
func NewGitRepo(t testing.TB) *GitRepo {
	t.Helper()
	r := &GitRepo{git: LookBinary(t, "git"), root: t.TempDir(), Name: "locks.git"}
	r.Dir = filepath.Join(r.root, r.Name)
	r.run(t, nil, "init", "--quiet", "--bare", r.Dir)
	r.Git(t, "config", "http.receivepack", "true")
	r.Git(t, "config", "gc.auto", "0")
	r.Git(t, "config", "receive.autogc", "false")
	return r
}

// Git runs git on the bare repository and returns its trimmed output.
func (r *GitRepo) Git(t testing.TB, args ...string) string {
	t.Helper()
	return r.run(t, nil, append([]string{"--git-dir", r.Dir}, args...)...)
}

// GitInput is Git with stdin.
func (r *GitRepo) GitInput(t testing.TB, stdin []byte, args ...string) string {
	t.Helper()
	return r.run(t, stdin, append([]string{"--git-dir", r.Dir}, args...)...)
}

// TryGit runs git on the repository and returns its output and error,
// for commands that may fail (show of a missing branch).
func (r *GitRepo) TryGit(stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.Command(r.git, append([]string{"--git-dir", r.Dir}, args...)...)
	cmd.Env = gitEnv()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, stderr.Bytes())
	}
	return out, nil
}

func (r *GitRepo) run(t testing.TB, stdin []byte, args ...string) string {
	t.Helper()
	cmd := exec.Command(r.git, args...)
	cmd.Env = gitEnv()
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// gitEnv isolates git from the user's and the system's configuration.
func gitEnv() []string {
	return []string{"GIT_CONFIG_NOSYSTEM=1", "HOME=/nonexistent", "PATH=/usr/local/bin:/usr/bin:/bin",
		"GIT_AUTHOR_NAME=test", "GIT_AUTHOR_EMAIL=test@localhost",
		"GIT_COMMITTER_NAME=test", "GIT_COMMITTER_EMAIL=test@localhost"}
}

// GitHTTPAuth makes the HTTP server demand credentials: HTTP basic auth
// with Username and Password, or a bearer Token. Zero: no auth.
type GitHTTPAuth struct {
	Username, Password, Token string
}

func (a GitHTTPAuth) allows(req *http.Request) bool {
	eq := func(x, y string) bool { return subtle.ConstantTimeCompare([]byte(x), []byte(y)) == 1 }
	switch {
	case a.Token != "":
		return eq(req.Header.Get("Authorization"), "Bearer "+a.Token)
	case a.Username != "" || a.Password != "":
		u, p, ok := req.BasicAuth()
		return ok && eq(u, a.Username) && eq(p, a.Password)
	}
	return true
}

// ServeHTTP serves the repository's root by `git http-backend` through
// net/http/cgi on a 127.0.0.1 port, until t ends. It returns host:port; the
// repository's URL is http://ADDR/NAME.
func (r *GitRepo) ServeHTTP(t testing.TB, auth GitHTTPAuth) (addr string) {
	t.Helper()
	backend := &cgi.Handler{
		Path:   r.git,
		Args:   []string{"http-backend"},
		Env:    append(gitEnv(), "GIT_PROJECT_ROOT="+r.root, "GIT_HTTP_EXPORT_ALL=1"),
		Stderr: io.Discard, // receive-pack reports lost races here too
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !auth.allows(req) {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		if r.Git251Refusals && req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/git-receive-pack") {
			r.serveReworded(w, req, backend)
			return
		}
		backend.ServeHTTP(w, req)
	}))
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// serveReworded runs receive-pack through backend and rewrites the reason
// of every command its ref transaction refused ("ng <ref> failed to update
// ref" or "failed to lock" in the report-status pkt-lines) the way git 2.51
// words it, from what the command asked (to create the ref, or to move it
// from an old value) and whether the ref exists. Other reasons (a hook
// declined) are git's own in every version, and stay.
func (r *GitRepo) serveReworded(w http.ResponseWriter, req *http.Request, backend http.Handler) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	creates := map[string]bool{} // ref -> the command creates it
	for _, line := range pktLines(body) {
		if line == nil {
			break // the flush before the pack
		}
		cmd, _, _ := strings.Cut(strings.TrimSuffix(string(line), "\n"), "\x00")
		if f := strings.Fields(cmd); len(f) == 3 {
			creates[f[2]] = strings.Trim(f[0], "0") == ""
		}
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	rec := httptest.NewRecorder()
	backend.ServeHTTP(rec, req)
	var out bytes.Buffer
	for _, line := range pktLines(rec.Body.Bytes()) {
		if line == nil {
			out.WriteString("0000")
			continue
		}
		ref, old, ok := strings.Cut(strings.TrimPrefix(string(line), "ng "), " ")
		if ok && strings.HasPrefix(string(line), "ng ") && strings.HasPrefix(old, "failed to ") {
			reason := "incorrect old value provided"
			switch {
			case creates[ref]:
				reason = "reference already exists"
			default:
				if _, err := r.TryGit(nil, "rev-parse", "--verify", "--quiet", ref); err != nil {
					reason = "reference does not exist"
				}
			}
			line = []byte("ng " + ref + " " + reason + "\n")
		}
		fmt.Fprintf(&out, "%04x%s", len(line)+4, line)
	}
	for k, v := range rec.Header() {
		if k != "Content-Length" {
			w.Header()[k] = v
		}
	}
	w.WriteHeader(rec.Code)
	w.Write(out.Bytes())
}

// pktLines splits git pkt-line data into payloads, with nil for a flush
// packet; it stops at the first thing that is not a pkt-line (a pack).
func pktLines(data []byte) [][]byte {
	var lines [][]byte
	for len(data) >= 4 {
		var n int
		if _, err := fmt.Sscanf(string(data[:4]), "%04x", &n); err != nil || (n > 0 && n < 4) || n > len(data) {
			break
		}
		if n == 0 {
			lines = append(lines, nil)
			data = data[4:]
			continue
		}
		lines = append(lines, data[4:n])
		data = data[n:]
	}
	return lines
}

// ServeDaemon serves the repository's root by `git daemon
// --enable=receive-pack` on a free 127.0.0.1 port, until t ends. It returns
// host:port; the repository's URL is git://ADDR/NAME.
func (r *GitRepo) ServeDaemon(t testing.TB) (addr string) {
	t.Helper()
	var lastErr error
	for range 3 { // the free port may be taken before the daemon binds it
		port := FreePort(t)
		stop, err := r.startDaemon(port)
		if err == nil {
			r.mu.Lock()
			r.daemonPort, r.daemonStop = port, stop
			r.mu.Unlock()
			t.Cleanup(func() {
				r.mu.Lock()
				defer r.mu.Unlock()
				r.daemonStop()
			})
			return net.JoinHostPort("127.0.0.1", fmt.Sprint(port))
		}
		lastErr = err
	}
	t.Fatalf("git daemon: %v", lastErr)
	return ""
}

// RestartDaemon kills the git daemon ServeDaemon started (SIGKILL, as a
// crash) and starts it again on the same port, returning once it listens.
func (r *GitRepo) RestartDaemon(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.daemonStop()
	var err error
	for range 10 { // the port can stay busy for a moment after the kill
		var stop func()
		if stop, err = r.startDaemon(r.daemonPort); err == nil {
			r.daemonStop = stop
			return
		}
	}
	r.daemonStop = func() {}
	t.Fatalf("restarting git daemon: %v", err)
}

func (r *GitRepo) startDaemon(port int) (stop func(), err error) {
	cmd := exec.Command(r.git, "daemon", "--verbose", "--reuseaddr", "--export-all", "--enable=receive-pack",
		"--informative-errors", "--listen=127.0.0.1", fmt.Sprintf("--port=%d", port),
		"--base-path="+r.root, r.root)
	cmd.Env = gitEnv()
	// Its own process group, so that stop also kills the per-connection
	// children, which hold the listening socket too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// A pipe of our own rather than StderrPipe: the daemon's per-connection
	// children inherit it, and Wait must not wait for them.
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	cmd.Stderr = pw
	err = cmd.Start()
	pw.Close()
	if err != nil {
		pr.Close()
		return nil, err
	}
	// git daemon logs "Ready to rumble" once it listens.
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		var log []string
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Ready to rumble") {
				ready <- nil
				io.Copy(io.Discard, pr)
				return
			}
			log = append(log, sc.Text())
		}
		ready <- fmt.Errorf("exited before listening: %s", strings.Join(log, "\n"))
	}()
	stop = func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		cmd.Wait()
		pr.Close()
	}
	select {
	case err := <-ready:
		if err != nil {
			stop()
			return nil, err
		}
	case <-time.After(30 * time.Second):
		stop()
		return nil, fmt.Errorf("not listening after 30s")
	}
	return stop, nil
}

// ServeSSH serves the repository's root over ssh on a 127.0.0.1 port, until
// t ends: an in-process ssh server (golang.org/x/crypto/ssh) that accepts
// only clientKey and runs Debian's git-upload-pack and git-receive-pack for
// the client's exec requests, as a forge's ssh endpoint does. It returns
// host:port and the server's host key (for a known_hosts file); the
// repository's URL is ssh://git@ADDR/NAME.
func (r *GitRepo) ServeSSH(t testing.TB, clientKey ssh.PublicKey) (addr string, hostKey ssh.PublicKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if bytes.Equal(k.Marshal(), clientKey.Marshal()) {
			return nil, nil
		}
		return nil, fmt.Errorf("unknown public key")
	}}
	cfg.AddHostKey(signer)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sshServer{repo: r, cfg: cfg}
	t.Cleanup(s.wg.Wait) // after ServeConns's cleanup has closed the connections
	ServeConns(t, ln, s.serveConn)
	return ln.Addr().String(), signer.PublicKey()
}

type sshServer struct {
	repo *GitRepo
	cfg  *ssh.ServerConfig
	wg   sync.WaitGroup // a connection's request and session goroutines
}

func (s *sshServer) serveConn(nc net.Conn) {
	_, chans, reqs, err := ssh.NewServerConn(nc, s.cfg)
	if err != nil {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ssh.DiscardRequests(reqs)
	}()
	for nch := range chans {
		if nch.ChannelType() != "session" {
			nch.Reject(ssh.UnknownChannelType, "only sessions")
			continue
		}
		ch, chReqs, err := nch.Accept()
		if err != nil {
			continue
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serveSession(ch, chReqs)
		}()
	}
}

// serveSession runs one git command: "git-upload-pack '/path'" or
// "git-receive-pack '/path'", the path taken under the repository root.
func (s *sshServer) serveSession(ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	for req := range reqs {
		if req.Type != "exec" {
			if req.WantReply {
				req.Reply(false, nil)
			}
			continue
		}
		var exe struct{ Command string }
		if err := ssh.Unmarshal(req.Payload, &exe); err != nil {
			req.Reply(false, nil)
			return
		}
		service, path, _ := strings.Cut(exe.Command, " ")
		path = strings.Trim(path, "'")
		if service != "git-upload-pack" && service != "git-receive-pack" {
			req.Reply(false, nil)
			return
		}
		req.Reply(true, nil)
		cmd := exec.Command(s.repo.git, strings.TrimPrefix(service, "git-"), filepath.Join(s.repo.root, filepath.Clean("/"+path)))
		cmd.Env = gitEnv()
		cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
		status := uint32(0)
		stdin, err := cmd.StdinPipe()
		if err == nil {
			err = cmd.Start()
		}
		if err == nil {
			// Not awaited: it ends when the channel closes below.
			go func() {
				io.Copy(stdin, ch)
				stdin.Close()
			}()
			err = cmd.Wait()
		}
		if err != nil {
			status = 1
		}
		ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{status}))
		return
	}
}

// StartSSHAgent serves an ssh-agent holding key (an ed25519, RSA or ECDSA
// private key) on a unix socket until t ends, and returns the socket's path
// for $SSH_AUTH_SOCK.
func StartSSHAgent(t testing.TB, key any) string {
	t.Helper()
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: key}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ServeConns(t, ln, func(c net.Conn) { agent.ServeAgent(keyring, c) })
	return sock
}
