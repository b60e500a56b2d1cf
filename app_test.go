package leaderelection

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// runBackground runs Run until the test ends.
func runBackground(t *testing.T, opt Option) <-chan error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Run(ctx, opt) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-errc:
		case <-time.After(testTimeout):
			t.Error("Run did not return after cancel")
		}
	})
	return errc
}

// Point 4: the app reads leadership from Option.Leadership, in its own
// handler mounted on the health server.
func TestLeadershipVisibleInHandlerOnHealthServer(t *testing.T) {
	var le Leadership
	if le.IsLeader() {
		t.Fatal("the zero Leadership leads")
	}
	port := freePort(t)
	runBackground(t, Option{
		Lock: locktest.NewMemoryStore("app").Lock("a"), Port: port, HealthBindAddress: "127.0.0.1",
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
		Leadership: &le,
		Handlers: map[string]http.Handler{"/work": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintf(w, "leader=%v term=%d", le.IsLeader(), le.Term())
		})},
		Run: func(ctx context.Context) { <-ctx.Done() },
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	waitFor(t, "/work to say this replica leads", func() bool {
		code, body := httpGet(t, base+"/work")
		return code == http.StatusOK && body == "leader=true term=1"
	})
	if le.Leader() != "a" {
		t.Fatalf("Leader() = %q, want a", le.Leader())
	}
}

// Point 5: with LeaderOnlyReady, /readyz fails on the follower only, and
// /livez stays green on both.
func TestLeaderOnlyReadyFailsFollowersOnly(t *testing.T) {
	store := locktest.NewMemoryStore("ready")
	var la, lb Leadership
	pa, pb := freePort(t), freePort(t)
	for _, c := range []struct {
		id   string
		port int
		le   *Leadership
	}{{"a", pa, &la}, {"b", pb, &lb}} {
		runBackground(t, Option{
			Lock: store.Lock(c.id), Port: c.port, HealthBindAddress: "127.0.0.1", LeaderOnlyReady: true, Leadership: c.le,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
			Run: func(ctx context.Context) { <-ctx.Done() },
		})
	}
	waitFor(t, "one leader", func() bool { return la.IsLeader() != lb.IsLeader() && la.Leader() != "" && lb.Leader() != "" })
	leader, follower := pa, pb
	if lb.IsLeader() {
		leader, follower = pb, pa
	}
	url := func(port int, path string) string { return "http://127.0.0.1:" + strconv.Itoa(port) + path }
	if code, body := httpGet(t, url(leader, "/readyz")); code != http.StatusOK {
		t.Errorf("leader /readyz: %d %s", code, body)
	}
	if code, body := httpGet(t, url(follower, "/readyz")); code != http.StatusInternalServerError || !strings.Contains(body, "[-]leader failed") {
		t.Errorf("follower /readyz: %d %s, want 500 with the leader check failing", code, body)
	}
	for _, p := range []int{leader, follower} {
		if code, body := httpGet(t, url(p, "/livez")); code != http.StatusOK {
			t.Errorf("/livez on :%d: %d %s", p, code, body)
		}
	}
}

// Point 7: an error from RunE ends Run with ErrRunFailed and releases the
// lock.
func TestRunEErrorIsReturnedAndLockReleased(t *testing.T) {
	store := locktest.NewMemoryStore("rune")
	l := store.Lock("a")
	boom := errors.New("boom")
	err := Run(context.Background(), Option{
		Lock: l, Port: NoHealthServer, ReleaseOnCancel: true,
		RunE: func(ctx context.Context) error { return boom },
	})
	if !errors.Is(err, ErrRunFailed) || !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want ErrRunFailed wrapping boom", err)
	}
	rec, _, gerr := l.Get(context.Background())
	if gerr != nil || rec.HolderIdentity != "" {
		t.Fatalf("record after RunE failed: %+v %v, want released", rec, gerr)
	}
	err = Run(context.Background(), Option{Disabled: true, Port: NoHealthServer, RunE: func(context.Context) error { return boom }})
	if !errors.Is(err, boom) {
		t.Fatalf("Run disabled = %v, want boom", err)
	}
}

// Points 7 and 8: RunOrDie exits 1 when RunE fails, logging the error once,
// through the configured (slog) logger. The test runs itself as the
// program.
func TestRunOrDieExitsNonZeroLoggingOnceThroughSlog(t *testing.T) {
	if os.Getenv("LE_RUNORDIE_CHILD") == "1" {
		runOrDieChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunOrDieExitsNonZeroLoggingOnceThroughSlog$")
	cmd.Env = append(os.Environ(), "LE_RUNORDIE_CHILD=1")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("exit: %v, want status 1; output:\n%s", err, out)
	}
	if n := strings.Count(string(out), "disk full"); n != 1 {
		t.Fatalf("the error appears %d times, want once:\n%s", n, out)
	}
	if !strings.Contains(string(out), `"msg":"Exiting"`) {
		t.Fatalf("the error was not logged through the slog JSON handler:\n%s", out)
	}
}

// Point 4 and 10: with --leader-elect=false the process leads while its
// function runs, on /status and the leader metric.
func TestDisabledElectionReportsLeading(t *testing.T) {
	port := freePort(t)
	var le Leadership
	running := make(chan struct{})
	runBackground(t, Option{Disabled: true, ID: "solo", Port: port, HealthBindAddress: "127.0.0.1", Leadership: &le,
		Run: func(ctx context.Context) { close(running); <-ctx.Done() }})
	<-running
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	if _, body := httpGet(t, base+"/status"); !strings.Contains(body, `"leading":true`) || !strings.Contains(body, `"identity":"solo"`) {
		t.Errorf("/status without election: %s", body)
	}
	if _, body := httpGet(t, base+"/metrics"); !strings.Contains(body, `leader_election_master_status{name="disabled"} 1`) {
		t.Errorf("/metrics without election lacks master_status 1")
	}
	if !le.IsLeader() {
		t.Error("Leadership says not leading")
	}
}

// Point 10: failed store calls count per lock, on followers too.
func TestStoreErrorsAreCounted(t *testing.T) {
	store := locktest.NewMemoryStore("errs")
	store.SetFault(func(string) error { return errors.New("store down") })
	port := freePort(t)
	runBackground(t, Option{Lock: store.Lock("a"), Port: port, HealthBindAddress: "127.0.0.1",
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
		Run: func(ctx context.Context) { <-ctx.Done() }})
	waitFor(t, "the store error counter", func() bool {
		_, body := httpGet(t, "http://127.0.0.1:"+strconv.Itoa(port)+"/metrics")
		return strings.Contains(body, `leader_election_store_errors_total{name="memory://errs"} `) &&
			!strings.Contains(body, `leader_election_store_errors_total{name="memory://errs"} 0`)
	})
}

// lockedBuffer is a log sink the test reads while the elector writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Point 9: a corrupt record fails /readyz on every candidate, naming the
// lock; counts as a store error; the log says which object to delete; the
// record is never overwritten.
func TestCorruptRecordFailsReadyzEverywhereAndIsKept(t *testing.T) {
	store := locktest.NewMemoryStore("corrupt")
	store.SetRaw([]byte("garbage"))
	var logs lockedBuffer
	logger := logr.FromSlogHandler(slog.NewJSONHandler(&logs, nil))
	ports := []int{freePort(t), freePort(t)}
	for i, id := range []string{"a", "b"} {
		runBackground(t, Option{Lock: store.Lock(id), Port: ports[i], HealthBindAddress: "127.0.0.1", Logger: &logger,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
			Run: func(ctx context.Context) { t.Error("led over a corrupt record"); <-ctx.Done() }})
	}
	for _, p := range ports {
		base := "http://127.0.0.1:" + strconv.Itoa(p)
		waitFor(t, "/readyz to fail naming the lock", func() bool {
			code, body := httpGet(t, base+"/readyz?verbose")
			return code == http.StatusInternalServerError && strings.Contains(body, "[-]store failed")
		})
		if _, body := httpGet(t, base+"/readyz/store"); !strings.Contains(body, "memory://corrupt") {
			t.Errorf("/readyz/store does not name the lock: %s", body)
		}
		if _, body := httpGet(t, base+"/metrics"); strings.Contains(body, `leader_election_store_errors_total{name="memory://corrupt"} 0`) {
			t.Error("the corrupt record is not counted as a store error")
		}
	}
	waitFor(t, "the log to say what to delete", func() bool {
		return strings.Contains(logs.String(), `"delete":"memory://corrupt"`)
	})
	if got := string(store.Raw()); got != "garbage" {
		t.Fatalf("corrupt record overwritten with %q", got)
	}
}

// Point 11: a candidate that finds the lock held under its own identity by
// another process warns, naming the identity.
func TestSharedIdentityIsWarned(t *testing.T) {
	store := locktest.NewMemoryStore("shared")
	var logs lockedBuffer
	logger := logr.FromSlogHandler(slog.NewJSONHandler(&logs, nil))
	leading := make(chan struct{})
	runBackground(t, Option{Lock: store.Lock("pod-0"), Port: NoHealthServer,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
		Run: func(ctx context.Context) { close(leading); <-ctx.Done() }})
	<-leading
	runBackground(t, Option{Lock: store.Lock("pod-0"), Port: NoHealthServer, Logger: &logger,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
		Run: func(ctx context.Context) { <-ctx.Done() }})
	waitFor(t, "a warning naming the shared identity", func() bool {
		return strings.Contains(logs.String(), `"sharedIdentity":"pod-0"`)
	})
}

// NewHealthServer serves the metrics the elector was built with (by
// default, or Config.Metrics), and leaves the elector as it was built.
func TestNewHealthServerServesTheElectorsMetrics(t *testing.T) {
	given := healthz.NewRenewMetrics()
	for _, tc := range []struct {
		name    string
		metrics Metrics
	}{{"default", nil}, {"Config.Metrics", given}} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := NewElector(Config{
				Lock:          locktest.NewMemoryStore("metrics").Lock("a"),
				LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
				Callbacks: Callbacks{OnStartedLeading: func(context.Context) {}},
				Metrics:   tc.metrics,
			})
			if err != nil {
				t.Fatal(err)
			}
			built := e.c.Metrics
			if tc.metrics != nil && built != tc.metrics {
				t.Fatalf("the elector observes %p, not Config.Metrics %p", built, tc.metrics)
			}
			srv, err := NewHealthServer(e, healthz.Options{Addr: "127.0.0.1:0"})
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			if e.c.Metrics != built {
				t.Errorf("NewHealthServer changed the elector's metrics from %p to %p", built, e.c.Metrics)
			}
			if srv.Metrics() == nil || Metrics(srv.Metrics()) != built {
				t.Errorf("the server serves %p, not the elector's metrics %p", srv.Metrics(), built)
			}
			// Metrics the elector does not feed are refused, naming both.
			if _, err := NewHealthServer(e, healthz.Options{Addr: "127.0.0.1:0", Metrics: healthz.NewRenewMetrics()}); err == nil ||
				!strings.Contains(err.Error(), "healthz.Options.Metrics") || !strings.Contains(err.Error(), "Config.Metrics") {
				t.Errorf("NewHealthServer with metrics the elector does not feed: %v, want an error naming Options.Metrics and Config.Metrics", err)
			}
		})
	}
}
