package testserver

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"github.com/b3df926d/leaderelection/internal/freeport"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// Token users of the test apiserver, besides the harness's admin. They are in
// no group but system:authenticated, so they may do nothing until a test
// grants them RBAC roles.
const (
	KubeUserAlice = "alice"
	KubeUserBob   = "bob"
)

// Kube is a running etcd and kube-apiserver (built by hack/deps/10-kube.sh)
// on 127.0.0.1, serving TLS with a self-signed certificate, authenticating
// bearer tokens and authorizing with RBAC.
type Kube struct {
	// Addr is the apiserver's host:port; point a Proxy at it to inject
	// faults.
	Addr string
	// EtcdURL is etcd's client URL.
	EtcdURL string

	dir      string
	tokens   map[string]string // user → bearer token
	caData   []byte
	args     []string
	bin      string
	etcdBin  string
	etcdArgs []string
	mu       sync.Mutex
	etcd     *proc
	apisrv   *proc
	stopped  bool
}

var shared struct {
	once sync.Once
	kube *Kube
	err  error
}

// SharedKube returns the test package's one etcd + kube-apiserver, starting
// it on first use (it takes a few seconds and a few hundred MB, so tests
// share it and keep their objects apart by name or namespace). The
// package's TestMain stops it: os.Exit(testserver.RunTests(m)); should
// the test binary die first, the servers die with it.
func SharedKube(t testing.TB) *Kube {
	t.Helper()
	etcdBin := LookBinary(t, "etcd")
	apiBin := LookBinary(t, "kube-apiserver")
	shared.once.Do(func() {
		dir, err := os.MkdirTemp("", "le-kube-")
		if err != nil {
			shared.err = err
			return
		}
		shared.kube, shared.err = startKubeRetrying(dir, etcdBin, apiBin)
		if shared.err != nil {
			os.RemoveAll(dir)
		}
	})
	if shared.err != nil {
		t.Fatalf("starting the shared kube-apiserver: %v", shared.err)
	}
	return shared.kube
}

// RunTests runs m's tests, then stops the server SharedKube started, if
// any, and returns m.Run's code: the TestMain of a package whose tests
// use SharedKube.
func RunTests(m *testing.M) int {
	defer StopSharedKube()
	return m.Run()
}

// StopSharedKube stops the server SharedKube started, if any, and removes
// its files. It is for TestMain (RunTests).
func StopSharedKube() {
	if shared.kube != nil {
		shared.kube.stop()
		os.RemoveAll(filepath.Dir(shared.kube.dir)) // the directory of its attempts
	}
}

// StartKube starts an etcd + kube-apiserver of the test's own (for tests
// that restart or break it), stopped when t ends.
func StartKube(t testing.TB) *Kube {
	t.Helper()
	etcdBin := LookBinary(t, "etcd")
	apiBin := LookBinary(t, "kube-apiserver")
	k, err := startKubeRetrying(t.TempDir(), etcdBin, apiBin)
	if err != nil {
		t.Fatalf("starting kube-apiserver: %v", err)
	}
	t.Cleanup(k.stop)
	return k
}

// startKubeRetrying is startKube in a fresh directory under dir, up to
// three times: another process may take one of the free ports before
// etcd or kube-apiserver binds it (either then exits, which waitReady
// sees), and each attempt picks new ones.
func startKubeRetrying(dir, etcdBin, apiBin string) (*Kube, error) {
	var err error
	for attempt := 1; attempt <= 3; attempt++ {
		sub := filepath.Join(dir, fmt.Sprintf("try%d", attempt))
		if err = os.Mkdir(sub, 0o700); err != nil {
			return nil, err
		}
		var k *Kube
		if k, err = startKube(sub, etcdBin, apiBin); err == nil {
			return k, nil
		}
	}
	return nil, err
}

func startKube(dir, etcdBin, apiBin string) (*Kube, error) {
	k := &Kube{dir: dir, bin: apiBin, tokens: map[string]string{}}
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	k.EtcdURL = clientURL
	k.Addr = fmt.Sprintf("127.0.0.1:%d", ports[2])

	k.etcdBin = etcdBin
	k.etcdArgs = []string{
		"--name=le-test",
		"--data-dir=" + filepath.Join(dir, "etcd"),
		"--listen-client-urls=" + clientURL,
		"--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL,
		"--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=le-test=" + peerURL,
		"--unsafe-no-fsync",
		"--log-level=warn",
	}
	k.etcd, err = k.spawn("etcd", k.etcdBin, k.etcdArgs...)
	if err != nil {
		return nil, err
	}

	var tokens bytes.Buffer
	for _, u := range []struct{ name, groups string }{
		{"admin", "system:masters"}, {KubeUserAlice, ""}, {KubeUserBob, ""},
	} {
		tok := randomHex(16)
		k.tokens[u.name] = tok
		fmt.Fprintf(&tokens, "%s,%s,%s,%q\n", tok, u.name, u.name, u.groups)
	}
	tokenFile := filepath.Join(dir, "tokens.csv")
	saKey := filepath.Join(dir, "sa.key")
	if err := os.WriteFile(tokenFile, tokens.Bytes(), 0o600); err != nil {
		k.stop()
		return nil, err
	}
	if err := writeRSAKey(saKey); err != nil {
		k.stop()
		return nil, err
	}
	k.args = []string{
		"--etcd-servers=" + clientURL,
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(ports[2]),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--token-auth-file=" + tokenFile,
		"--authorization-mode=RBAC",
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--service-account-key-file=" + saKey,
		"--service-account-signing-key-file=" + saKey,
		"--service-cluster-ip-range=10.0.0.0/24",
		// No controller-manager runs, and the loopback address is not a
		// valid endpoint for the kubernetes service.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=0",
	}
	if err := k.startAPIServer(); err != nil {
		k.stop()
		return nil, err
	}
	return k, nil
}

func (k *Kube) startAPIServer() error {
	p, err := k.spawn("kube-apiserver", k.bin, k.args...)
	if err != nil {
		return err
	}
	k.mu.Lock()
	k.apisrv = p
	k.mu.Unlock()
	if err := k.waitReady(p, 90*time.Second); err != nil {
		return fmt.Errorf("%w\n%s", err, k.logTail("kube-apiserver"))
	}
	return nil
}

// proc is a running server process.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when it has exited
}

// spawn starts a server in its own process group, logging to dir/name.log.
func (k *Kube) spawn(name, bin string, args ...string) (*proc, error) {
	logf, err := os.OpenFile(filepath.Join(k.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Its own process group, so stop kills whatever it forks; and killed
	// with the test binary should that die without cleaning up.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	logf.Close()
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait() // the exit shows in the log and in readiness
		close(p.done)
	}()
	return p, nil
}

// kill stops the process group: SIGTERM (or SIGKILL when crash is set), then
// SIGKILL after 10s, and waits for the exit.
func (p *proc) kill(crash bool) {
	if p == nil {
		return
	}
	sig := syscall.SIGTERM
	if crash {
		sig = syscall.SIGKILL
	}
	syscall.Kill(-p.cmd.Process.Pid, sig)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

func (k *Kube) waitReady(p *proc, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	crt := filepath.Join(k.dir, "certs", "apiserver.crt")
	for {
		select {
		case <-p.done:
			return fmt.Errorf("kube-apiserver exited before it was ready")
		case <-k.etcdDone():
			return fmt.Errorf("etcd exited before kube-apiserver was ready\n%s", k.logTail("etcd"))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kube-apiserver not ready within %v", limit)
		}
		if ca, err := os.ReadFile(crt); err == nil && len(ca) > 0 {
			k.mu.Lock()
			k.caData = ca
			k.mu.Unlock()
			if k.probe("/readyz") == nil {
				return nil
			}
		}
		time.Sleep(100 * time.Millisecond) // polling a server that has no readiness signal
	}
}

// etcdDone is closed once etcd has exited (never, if it is not running).
func (k *Kube) etcdDone() <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.etcd == nil {
		return nil
	}
	return k.etcd.done
}

// probe GETs path as admin and reports an error unless it answers 200.
func (k *Kube) probe(path string) error {
	cfg := k.Config()
	tr, err := rest.TransportFor(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+path, nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", path, resp.Status)
	}
	return nil
}

// Config returns a client config for the harness's admin (system:masters).
// Each call returns a new config the caller may change.
func (k *Kube) Config() *rest.Config { return k.configFor("admin", k.Addr) }

// UserConfig returns a client config authenticating as a token user
// (KubeUserAlice, KubeUserBob), who may do only what RBAC grants.
func (k *Kube) UserConfig(user string) *rest.Config { return k.configFor(user, k.Addr) }

// ConfigVia returns a copy of cfg that connects through addr (a Proxy in
// front of Addr) while still verifying the apiserver's certificate: TLS
// passes through a TCP proxy untouched.
func (k *Kube) ConfigVia(cfg *rest.Config, addr string) *rest.Config {
	c := rest.CopyConfig(cfg)
	c.Host = "https://" + addr
	c.TLSClientConfig.ServerName = "127.0.0.1"
	return c
}

// TokenConfig returns a client config that authenticates with a bearer
// token, such as a service account's.
func (k *Kube) TokenConfig(token string) *rest.Config {
	c := k.configFor("", k.Addr)
	c.BearerToken = token
	return c
}

func (k *Kube) configFor(user, addr string) *rest.Config {
	k.mu.Lock()
	ca := append([]byte(nil), k.caData...)
	k.mu.Unlock()
	return &rest.Config{
		Host:            "https://" + addr,
		BearerToken:     k.tokens[user],
		TLSClientConfig: rest.TLSClientConfig{CAData: ca},
		// No client-side rate limit: tests and benchmarks measure the
		// server. No Timeout: it would cut long-running watches.
		QPS: -1,
	}
}

// Kubeconfig writes a kubeconfig file for the admin into dir and returns its
// path, for code under test that reads --kubeconfig.
func (k *Kube) Kubeconfig(t testing.TB) string {
	t.Helper()
	return k.KubeconfigVia(t, k.Addr)
}

// KubeconfigVia is Kubeconfig for a client that connects through addr (a
// Proxy in front of Addr, also on 127.0.0.1, so the certificate still
// matches).
func (k *Kube) KubeconfigVia(t testing.TB, addr string) string {
	t.Helper()
	k.mu.Lock()
	ca := append([]byte(nil), k.caData...)
	k.mu.Unlock()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	content := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: "https://%s", certificate-authority: %q}
users:
- name: admin
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, addr, caFile, k.tokens["admin"])
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// RestartAPIServer kills kube-apiserver (SIGKILL, as a crash) and starts it
// again on the same port and etcd, returning once it is ready. Use it only
// on a server from StartKube.
func (k *Kube) RestartAPIServer(t testing.TB) {
	t.Helper()
	k.StopAPIServer(t)
	k.StartAPIServer(t)
}

// StopAPIServer kills kube-apiserver (SIGKILL, as a crash) and leaves it
// down until StartAPIServer. Use it only on a server from StartKube.
func (k *Kube) StopAPIServer(t testing.TB) {
	t.Helper()
	k.mu.Lock()
	p := k.apisrv
	k.apisrv = nil
	k.mu.Unlock()
	p.kill(true)
}

// StartAPIServer starts a kube-apiserver stopped by StopAPIServer again and
// waits until it is ready.
func (k *Kube) StartAPIServer(t testing.TB) {
	t.Helper()
	if err := k.startAPIServer(); err != nil {
		t.Fatalf("starting kube-apiserver: %v", err)
	}
}

// LeaseRequests returns how many requests on Leases the apiserver has
// served since it started (its apiserver_request_total metric), to measure
// what an election costs the store.
func (k *Kube) LeaseRequests() (int64, error) { return k.Requests("leases", "") }

// Requests returns how many requests on resource (a plural, "configmaps")
// the apiserver has served since it started, of verb as its metrics name
// it ("LIST", "WATCH", "POST", ...; "" for every verb), from its
// apiserver_request_total metric. The apiserver's own clients count too.
func (k *Kube) Requests(resource, verb string) (int64, error) {
	cfg := k.Config()
	tr, err := rest.TransportFor(cfg)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("/metrics: %s", resp.Status)
	}
	var n int64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") || !strings.Contains(line, `resource="`+resource+`"`) ||
			(verb != "" && !strings.Contains(line, `verb="`+verb+`"`)) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("/metrics: %q: %w", line, err)
		}
		n += int64(v)
	}
	return n, sc.Err()
}

// RestartEtcd kills etcd (SIGKILL, as a crash) and starts it again on the
// same ports and data, returning once the apiserver is ready through it
// again. Use it only on a server from StartKube.
func (k *Kube) RestartEtcd(t testing.TB) {
	t.Helper()
	k.mu.Lock()
	old := k.etcd
	k.etcd = nil
	k.mu.Unlock()
	old.kill(true)
	p, err := k.spawn("etcd", k.etcdBin, k.etcdArgs...)
	if err != nil {
		t.Fatalf("restarting etcd: %v", err)
	}
	k.mu.Lock()
	k.etcd = p
	api := k.apisrv
	k.mu.Unlock()
	if err := k.waitReady(api, 90*time.Second); err != nil {
		t.Fatalf("kube-apiserver not ready after an etcd restart: %v\n%s", err, k.logTail("etcd"))
	}
}

func (k *Kube) stop() {
	k.mu.Lock()
	if k.stopped {
		k.mu.Unlock()
		return
	}
	k.stopped = true
	api, etcd := k.apisrv, k.etcd
	k.mu.Unlock()
	api.kill(false)
	etcd.kill(false)
}

// logTail returns the end of a server's log, for failure messages.
func (k *Kube) logTail(name string) string {
	b, err := os.ReadFile(filepath.Join(k.dir, name+".log"))
	if err != nil {
		return ""
	}
	if len(b) > 4000 {
		b = b[len(b)-4000:]
	}
	return name + " log (tail):\n" + strings.TrimSpace(string(b))
}

// KubeRequestCounter counts the Kubernetes API requests made through the
// configs it wraps, by verb: "get", "list", "watch", "create", "update",
// "patch", "delete" (RequestCounter counts by HTTP method, which cannot tell
// a watch or a list from a get).
type KubeRequestCounter struct {
	mu     sync.Mutex
	counts map[string]int
}

// CountRequests returns a copy of cfg whose requests c counts.
func (c *KubeRequestCounter) CountRequests(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			c.add(requestKind(req))
			return rt.RoundTrip(req)
		})
	})
	return out
}

// Counts returns the counts so far.
func (c *KubeRequestCounter) Counts() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

// Total returns how many requests were made.
func (c *KubeRequestCounter) Total() int {
	n := 0
	for _, v := range c.Counts() {
		n += v
	}
	return n
}

// Reset sets every count to zero.
func (c *KubeRequestCounter) Reset() {
	c.mu.Lock()
	c.counts = nil
	c.mu.Unlock()
}

func (c *KubeRequestCounter) add(kind string) {
	c.mu.Lock()
	if c.counts == nil {
		c.counts = map[string]int{}
	}
	c.counts[kind]++
	c.mu.Unlock()
}

// requestKind names a request's verb as the API server's audit log would.
func requestKind(req *http.Request) string {
	switch req.Method {
	case http.MethodGet:
		if req.URL.Query().Get("watch") == "true" {
			return "watch"
		}
		// .../namespaces/NS/RESOURCE is a collection; .../RESOURCE/NAME an
		// object.
		parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
		for i, p := range parts {
			if p == "namespaces" && len(parts) == i+3 {
				return "list"
			}
		}
		return "get"
	case http.MethodPost:
		return "create"
	case http.MethodPut:
		return "update"
	case http.MethodPatch:
		return "patch"
	case http.MethodDelete:
		return "delete"
	}
	return strings.ToLower(req.Method)
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		p, err := freeport.Pick()
		if err != nil {
			return nil, err
		}
		ports = append(ports, p)
	}
	return ports, nil
}

func writeRSAKey(path string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	b := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	return os.WriteFile(path, b, 0o600)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return hex.EncodeToString(b)
}
