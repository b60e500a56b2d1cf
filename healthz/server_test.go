package healthz

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/b3df926d/leaderelection/internal/metricslint"
)

type fakeSource struct {
	mu sync.Mutex
	st Status
}

func (f *fakeSource) Status() Status { f.mu.Lock(); defer f.mu.Unlock(); return f.st }
func (f *fakeSource) set(mod func(*Status)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	mod(&f.st)
}

func start(t *testing.T, opts Options) string {
	t.Helper()
	opts.Addr = "127.0.0.1:0"
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve after shutdown: %v", err)
		}
	})
	return "http://" + s.Addr()
}

// metricsHave fails t unless /metrics at base has every line in wants.
func metricsHave(t *testing.T, base string, wants ...string) {
	t.Helper()
	_, body := get(t, base+"/metrics")
	for _, want := range wants {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// getStatus reads /status at base.
func getStatus(t *testing.T, base string) Status {
	t.Helper()
	code, body := get(t, base+"/status")
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || code != http.StatusOK {
		t.Fatalf("/status: %d %q %v", code, body, err)
	}
	return st
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestWatchdogFailsWhenTheLoopIsPastDueOnLeadersAndFollowers(t *testing.T) {
	for _, leading := range []bool{true, false} {
		clk := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		src := &fakeSource{st: Status{Name: "n", Identity: "a", Lock: "memory://x", Leading: leading,
			Heartbeat: clk.Now(), HeartbeatDue: clk.Now().Add(15 * time.Second), LeaseDuration: 15 * time.Second}}
		base := start(t, Options{Source: src, WatchdogTolerance: 5 * time.Second, Clock: clk})
		for _, path := range []string{"/healthz", "/livez", "/readyz", "/healthz/leaderElection", "/livez/ping"} {
			if code, body := get(t, base+path); code != http.StatusOK {
				t.Errorf("leading=%v: %s on a running loop: %d %s", leading, path, code, body)
			}
		}
		clk.SetTime(clk.Now().Add(20 * time.Second)) // exactly due + tolerance: still fine
		if code, _ := get(t, base+"/livez"); code != http.StatusOK {
			t.Errorf("leading=%v: /livez at exactly due+tolerance: %d", leading, code)
		}
		clk.SetTime(clk.Now().Add(time.Millisecond))
		for _, path := range []string{"/healthz", "/livez", "/healthz/leaderElection", "/livez/leaderElection"} {
			if code, body := get(t, base+path); code != http.StatusInternalServerError {
				t.Errorf("leading=%v: %s on a wedged loop: %d %s, want 500", leading, path, code, body)
			}
		}
		if _, body := get(t, base+"/livez/leaderElection"); !strings.Contains(body, "wedged") {
			t.Errorf("leading=%v: /livez/leaderElection does not name the wedge: %s", leading, body)
		}
		src.set(func(s *Status) { s.Heartbeat, s.HeartbeatDue = clk.Now(), clk.Now().Add(time.Second) })
		if code, body := get(t, base+"/livez"); code != http.StatusOK {
			t.Errorf("leading=%v: /livez after the loop came round: %d %s", leading, code, body)
		}
	}
}

func TestWatchdogFailsOnACallbackPastItsDeadline(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	now := clk.Now()
	src := &fakeSource{st: Status{Identity: "b", Lock: "memory://x", Heartbeat: now, HeartbeatDue: now.Add(time.Hour),
		Callbacks: []Callback{{Name: "OnStartedLeading", Since: now}, {Name: "OnNewLeader", Since: now, Due: now.Add(time.Second)}}}}
	base := start(t, Options{Source: src, WatchdogTolerance: time.Second, Clock: clk})
	clk.SetTime(now.Add(2 * time.Second))
	if code, body := get(t, base+"/livez"); code != http.StatusOK {
		t.Fatalf("/livez with callbacks within their deadlines: %d %s", code, body)
	}
	clk.SetTime(now.Add(2*time.Second + time.Millisecond))
	if code, body := get(t, base+"/livez/leaderElection"); code != http.StatusInternalServerError || !strings.Contains(body, "OnNewLeader") || strings.Contains(body, "OnStartedLeading") {
		t.Fatalf("/livez with OnNewLeader past its deadline: %d %s, want 500 naming it (and not the unbounded function)", code, body)
	}
}

func TestStoreFailureShowsOnReadyzNotLivez(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	src := &fakeSource{st: Status{Identity: "b", Lock: "memory://x", Heartbeat: clk.Now(), HeartbeatDue: clk.Now().Add(time.Minute),
		StoreError: "connection refused", StoreErrorSince: clk.Now()}}
	base := start(t, Options{Source: src, Clock: clk})
	if code, body := get(t, base+"/livez"); code != http.StatusOK {
		t.Errorf("/livez with the store down: %d %s, want 200 (restarting does not help)", code, body)
	}
	if code, body := get(t, base+"/readyz"); code != http.StatusInternalServerError || !strings.Contains(body, "[-]store failed") {
		t.Errorf("/readyz with the store down: %d %s", code, body)
	}
	if code, body := get(t, base+"/readyz/store"); code != http.StatusInternalServerError || !strings.Contains(body, "connection refused") {
		t.Errorf("/readyz/store: %d %s", code, body)
	}
	src.set(func(s *Status) { s.StoreError = "" })
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the store came back: %d %s", code, body)
	}
}

// /readyz?verbose names each failing check and its reason (the
// apiserver's handler withholds it); without ?verbose the reason stays
// withheld, and passing checks are listed as ok.
func TestReadyzVerboseNamesTheFailingCheckAndItsReason(t *testing.T) {
	clk := clocktesting.NewFakePassiveClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	src := &fakeSource{st: Status{Identity: "b", Lock: "memory://x", Heartbeat: clk.Now(), HeartbeatDue: clk.Now().Add(time.Minute),
		StoreError: "connection refused", StoreErrorSince: clk.Now()}}
	base := start(t, Options{Source: src, Clock: clk, Readiness: func(*http.Request) error { return errors.New("cache not synced\nyet") }})
	code, body := get(t, base+"/readyz?verbose")
	for _, want := range []string{"[+]ping ok", "[+]leaderElection ok", "[-]store failed: the store of memory://x has failed since", "connection refused", "[-]readiness failed: cache not synced; yet", "readyz check failed"} {
		if code != http.StatusInternalServerError || !strings.Contains(body, want) {
			t.Errorf("/readyz?verbose: %d, body lacks %q:\n%s", code, want, body)
		}
	}
	if _, body := get(t, base+"/readyz"); strings.Contains(body, "connection refused") || !strings.Contains(body, "[-]store failed: reason withheld") {
		t.Errorf("/readyz without ?verbose: %s; want the reason withheld", body)
	}
	src.set(func(s *Status) { s.StoreError = "" })
	if code, body := get(t, base+"/livez?verbose"); code != http.StatusOK || !strings.Contains(body, "[+]leaderElection ok") || !strings.Contains(body, "livez check passed") {
		t.Errorf("/livez?verbose, healthy: %d %s", code, body)
	}
	clk.SetTime(clk.Now().Add(2 * time.Minute)) // the loop is past due
	if code, body := get(t, base+"/livez?verbose"); code != http.StatusInternalServerError || !strings.Contains(body, "[-]leaderElection failed: ") || strings.Contains(body, "reason withheld") {
		t.Errorf("/livez?verbose with the loop past due: %d %s; want the watchdog's reason", code, body)
	}
}

func TestLivenessCheckerRunsOnFollowers(t *testing.T) {
	src := &fakeSource{st: Status{Name: "n", Identity: "b", Leader: "a"}}
	var fail sync.Map
	base := start(t, Options{Source: src, Liveness: func(*http.Request) error {
		if _, ok := fail.Load("x"); ok {
			return errors.New("worker stuck")
		}
		return nil
	}})
	if code, _ := get(t, base+"/livez/liveness"); code != http.StatusOK {
		t.Fatalf("healthy liveness: %d", code)
	}
	fail.Store("x", true)
	if code, body := get(t, base+"/livez"); code != http.StatusInternalServerError || !strings.Contains(body, "[-]liveness failed") {
		t.Fatalf("/livez with a failing liveness check: %d %q", code, body)
	}
	if code, body := get(t, base+"/livez/liveness"); code != http.StatusInternalServerError || !strings.Contains(body, "worker stuck") {
		t.Fatalf("/livez/liveness: %d %q", code, body)
	}
}

func TestMetricsAndStatus(t *testing.T) {
	renewed := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &fakeSource{st: Status{Name: "ctrl", Identity: "a", Leader: "a", Leading: true, Term: 7, Transitions: 7, LastRenew: renewed, LeaseDuration: 15 * time.Second}}
	s, err := New(Options{Addr: "127.0.0.1:0", Source: src})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	s.Metrics().ObserveRenew("ctrl", 3*time.Millisecond, nil)
	s.Metrics().ObserveRenew("ctrl", 9*time.Millisecond, errors.New("timeout"))
	base := "http://" + s.Addr()
	metricsHave(t, base,
		`leader_election_master_status{name="ctrl"} 1`,
		`leader_election_term{name="ctrl"} 7`,
		`leader_election_transitions_total{name="ctrl"} 7`,
		`leader_election_renew_duration_seconds_count{name="ctrl"} 2`,
		`leader_election_renew_failures_total{name="ctrl"} 1`)
	st := getStatus(t, base)
	if !st.Leading || st.Term != 7 || st.Identity != "a" || !st.LastRenew.Equal(renewed) {
		t.Fatalf("/status decoded to %+v", st)
	}
}

// Renewal metrics made before the server (for the elector's Config, as
// leaderelection.Run makes them) are the ones the server registers and
// serves.
func TestMetricsMadeBeforeTheServerAreServed(t *testing.T) {
	m := NewRenewMetrics()
	s, err := New(Options{Addr: "127.0.0.1:0", Source: &fakeSource{st: Status{Name: "ctrl"}}, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	if s.Metrics() != m {
		t.Error("Server.Metrics is not Options.Metrics")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	defer func() { cancel(); <-done }()
	m.ObserveRenew("ctrl", 3*time.Millisecond, errors.New("timeout"))
	_, body := get(t, "http://"+s.Addr()+"/metrics")
	for _, want := range []string{`leader_election_renew_duration_seconds_count{name="ctrl"} 1`, `leader_election_renew_failures_total{name="ctrl"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// Every metric of the health server is named leader_election_* and
// passes promlint (counters end in _total: transitions is one).
func TestMetricNamesFollowOnePrefixAndPrometheusConventions(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, &fakeSource{st: Status{Name: "ctrl"}})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveRenew("ctrl", time.Millisecond, errors.New("timeout")) // so that the vectors have a series
	names := metricslint.Check(t, reg, "")
	if len(names) != 6 {
		t.Errorf("checked %d metrics %v, want 6", len(names), names)
	}
}

// A replica of a shard set serves its part and the assignment on /status,
// and the shard metrics beside the election's; a single election has no
// shard metrics.
func TestShardedStatusAndMetrics(t *testing.T) {
	shards := &Shards{Count: 4, Slot: 1, Generation: 3, Acked: 3, Starts: 5, Stops: 2,
		Owned:   []OwnedShard{{Shard: 1, Term: 2}, {Shard: 3, Term: 3}},
		Members: []ShardMember{{Slot: 0, Identity: "a", Shards: []int{0, 2}}, {Slot: 1, Identity: "b", Shards: []int{1, 3}}}}
	m := NewRenewMetrics()
	base := start(t, Options{Source: &fakeSource{st: Status{Name: "ctrl", Identity: "b", Leading: true, Shards: shards}}, Metrics: m})
	m.ObserveMove("ctrl", 40*time.Millisecond)
	metricsHave(t, base,
		`leader_election_shards_owned{name="ctrl"} 2`,
		`leader_election_shard_starts_total{name="ctrl"} 5`,
		`leader_election_shard_stops_total{name="ctrl"} 2`,
		`leader_election_shard_move_duration_seconds_count{name="ctrl"} 1`,
		`leader_election_shard_move_duration_seconds_bucket{name="ctrl",le="0.064"} 1`)
	if st := getStatus(t, base); st.Shards == nil || !reflect.DeepEqual(*st.Shards, *shards) {
		t.Fatalf("/status shards decoded to %+v, want %+v", st.Shards, shards)
	}

	single := start(t, Options{Source: &fakeSource{st: Status{Name: "ctrl"}}})
	if _, body := get(t, single+"/metrics"); strings.Contains(body, "leader_election_shard") {
		t.Errorf("a single election serves shard metrics:\n%s", body)
	}
	if _, body := get(t, single+"/status"); strings.Contains(body, `"shards"`) {
		t.Errorf("a single election's /status has shards: %s", body)
	}
}

// The shard metrics follow the same conventions.
func TestShardMetricNamesFollowOnePrefixAndPrometheusConventions(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg, &fakeSource{st: Status{Name: "ctrl", Shards: &Shards{}}})
	if err != nil {
		t.Fatal(err)
	}
	m.ObserveRenew("ctrl", time.Millisecond, errors.New("timeout"))
	m.ObserveMove("ctrl", time.Millisecond)
	names := metricslint.Check(t, reg, "")
	if len(names) != 10 {
		t.Errorf("checked %d metrics %v, want 10", len(names), names)
	}
}

func TestPortInUseIsErrorFromNew(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = New(Options{Addr: ln.Addr().String(), Source: &fakeSource{}})
	if err == nil || !strings.Contains(err.Error(), ln.Addr().String()) {
		t.Fatalf("New on a used port = %v, want an error naming %s", err, ln.Addr())
	}
}

func TestNilSourceIsError(t *testing.T) {
	if _, err := New(Options{Addr: "127.0.0.1:0"}); err == nil {
		t.Fatal("New without a Source succeeded")
	}
}

func TestLeaderIs200OnTheLeaderAnd503Elsewhere(t *testing.T) {
	src := &fakeSource{st: Status{Identity: "a", Leader: "b", Transitions: 4, Term: 2}}
	url := start(t, Options{Source: src}) + "/leader"
	code, body := get(t, url)
	var got Leader
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/leader body %q: %v", body, err)
	}
	if want := (Leader{Identity: "a", Leader: "b", Term: 4}); code != http.StatusServiceUnavailable || got != want {
		t.Fatalf("follower: /leader = %d %+v, want 503 %+v", code, got, want)
	}
	src.set(func(s *Status) { s.Leading, s.Leader, s.Term, s.Transitions = true, "a", 5, 5 })
	code, body = get(t, url)
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("/leader body %q: %v", body, err)
	}
	if want := (Leader{Identity: "a", Leading: true, Leader: "a", Term: 5}); code != http.StatusOK || got != want {
		t.Fatalf("leader: /leader = %d %+v, want 200 %+v", code, got, want)
	}
}

// Point 5: the liveness check is not on /readyz (failing it would restart
// a follower that is merely not ready), and the readiness check is only on
// /readyz.
func TestLivenessAndReadinessAreSeparate(t *testing.T) {
	src := &fakeSource{st: Status{Name: "n", Identity: "b", Leader: "a"}}
	base := start(t, Options{Source: src,
		Liveness:  func(*http.Request) error { return errors.New("wedged") },
		Readiness: func(*http.Request) error { return errors.New("warming up") },
	})
	if code, body := get(t, base+"/readyz"); code != http.StatusInternalServerError || strings.Contains(body, "liveness") || !strings.Contains(body, "[-]readiness failed") {
		t.Errorf("/readyz: %d %q, want the readiness check failing and no liveness check", code, body)
	}
	if code, body := get(t, base+"/livez"); code != http.StatusInternalServerError || strings.Contains(body, "readiness") || !strings.Contains(body, "[-]liveness failed") {
		t.Errorf("/livez: %d %q, want the liveness check failing and no readiness check", code, body)
	}
}

func TestStatusDurationsAreText(t *testing.T) {
	src := &fakeSource{st: Status{Name: "n", LeaseDuration: 15 * time.Second}}
	base := start(t, Options{Source: src})
	_, body := get(t, base+"/status")
	if !strings.Contains(body, `"leaseDuration":"15s"`) {
		t.Fatalf("/status = %s, want leaseDuration as text", body)
	}
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || st.LeaseDuration != 15*time.Second {
		t.Fatalf("decoding /status: %+v %v", st, err)
	}
}

func TestHandlerOnAServerPathIsError(t *testing.T) {
	_, err := New(Options{Addr: "127.0.0.1:0", Source: &fakeSource{}, Handlers: map[string]http.Handler{"/healthz": http.NotFoundHandler()}})
	if err == nil || !strings.Contains(err.Error(), `Options.Handlers["/healthz"]`) {
		t.Fatalf("New with a handler on /healthz = %v, want an error naming it", err)
	}
}

// recovering is a lock's readiness (lock.ReadinessChecker) that an edge
// case test switches.
type recovering struct {
	mu  sync.Mutex
	err error
}

func (r *recovering) ReadinessName() string { return "gossip" }
func (r *recovering) Ready() error          { r.mu.Lock(); defer r.mu.Unlock(); return r.err }

func TestLockReadinessIsOnReadyzUnderItsNameNotLivez(t *testing.T) {
	src := &fakeSource{st: Status{Name: "n", Identity: "v3", Leader: "v1"}}
	rc := &recovering{err: errors.New("voter v3 is recovering its record")}
	base := start(t, Options{Source: src, LockReadiness: rc})
	if code, body := get(t, base+"/readyz/gossip"); code != http.StatusInternalServerError || !strings.Contains(body, "recovering") {
		t.Errorf("/readyz/gossip while recovering: %d %q", code, body)
	}
	if code, _ := get(t, base+"/readyz"); code != http.StatusInternalServerError {
		t.Errorf("/readyz while recovering: %d", code)
	}
	if code, _ := get(t, base+"/livez"); code != http.StatusOK {
		t.Errorf("/livez while recovering: %d, want 200", code)
	}
	rc.mu.Lock()
	rc.err = nil
	rc.mu.Unlock()
	if code, body := get(t, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz once recovered: %d %q", code, body)
	}
}
