package leaderelection

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

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
