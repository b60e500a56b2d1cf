package leaderelection

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/healthz"
)

const testTolerance = time.Second

// serveHealth serves e's health on 127.0.0.1 with the election's clock and
// returns a function that GETs a path.
func serveHealth(t *testing.T, el *election, e *Elector) func(path string) (int, string) {
	t.Helper()
	srv, err := healthz.New(healthz.Options{Addr: "127.0.0.1:0", Source: e, WatchdogTolerance: testTolerance, Clock: el.clk})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("health server: %v", err)
		}
	})
	base := "http://" + srv.Addr()
	return func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}

// livezFailsBy checks that /livez passes until due and fails once
// due+tolerance has passed, moving the clock (without settling: the
// elector is wedged).
func livezFailsBy(t *testing.T, el *election, get func(string) (int, string), due time.Time, want string) {
	t.Helper()
	el.clk.SetTime(due)
	if code, body := get("/livez"); code != http.StatusOK {
		t.Fatalf("/livez failed before the bound: %d %s", code, body)
	}
	el.clk.SetTime(due.Add(testTolerance + time.Millisecond))
	if code, body := get("/livez"); code != http.StatusInternalServerError {
		t.Fatalf("/livez %v after the bound: %d %s, want 500", testTolerance, code, body)
	}
	if code, body := get("/livez/leaderElection"); code != http.StatusInternalServerError || !strings.Contains(body, want) {
		t.Fatalf("/livez/leaderElection: %d %s, want 500 mentioning %q", code, body, want)
	}
}

// hangingLeader starts a leader whose next Update hangs, with its health
// server, and waits for it to settle.
func hangingLeader(t *testing.T) (*election, *candidate, *faultLock, func(string) (int, string)) {
	t.Helper()
	el := newElection(t)
	hl := &faultLock{Interface: el.store.Lock("a")}
	a := el.add("a", func(c *Config) { c.Lock = hl })
	waitFor(t, "a to lead", a.e.IsLeader)
	get := serveHealth(t, el, a.e)
	el.settle(t)
	hl.hangUpdate.Store(newGate(t))
	return el, a, hl, get
}

func TestWatchdogFailsWhenARenewalIgnoresItsContext(t *testing.T) {
	el, a, hl, get := hangingLeader(t)
	parkedAt := el.clk.Now()
	el.clk.Step(testRetry)
	waitFor(t, "the renewal to hang", func() bool { return hl.hangUpdate.Load().entered.Load() == 1 })
	// The loop promised to come round within RetryPeriod plus one store
	// call bounded by RenewDeadline.
	livezFailsBy(t, el, get, parkedAt.Add(testRetry+testRenew), "wedged")
	if a.e.IsLeader() {
		t.Fatal("a still leads") // the step-down timer does not wait for the hung call
	}
}

func TestWatchdogFailsWhenOnStoppedLeadingHangs(t *testing.T) {
	el := newElection(t)
	stopping := newGate(t)
	a := el.add("a", func(c *Config) { c.Callbacks.OnStoppedLeading = stopping.wait })
	waitFor(t, "a to lead", a.e.IsLeader)
	get := serveHealth(t, el, a.e)
	cancelled := el.clk.Now()
	a.cancel()
	waitFor(t, "OnStoppedLeading to run", func() bool { return stopping.entered.Load() == 1 })
	for el.clk.Since(cancelled) < testLease && !a.exited.Load() { // StopTimeout: a keeps renewing
		el.step(t, testRetry)
	}
	if err := a.wait(t); !errors.Is(err, ErrStopTimeout) || !strings.Contains(err.Error(), "OnStoppedLeading") {
		t.Fatalf("Run = %v, want ErrStopTimeout naming OnStoppedLeading", err)
	}
	if rec := el.holder(t); rec.HolderIdentity != "a" {
		t.Fatalf("the lock was released (holder %q) while OnStoppedLeading still ran", rec.HolderIdentity)
	}
	livezFailsBy(t, el, get, cancelled.Add(testLease), "OnStoppedLeading")
}

func TestWatchdogFailsWhenTheReleaseHangs(t *testing.T) {
	el, a, hl, get := hangingLeader(t)
	a.cancel()
	waitFor(t, "the release to hang", func() bool { return hl.hangUpdate.Load().entered.Load() == 1 })
	livezFailsBy(t, el, get, el.clk.Now().Add(testRenew), "wedged")
}

func TestWatchdogFailsWhenOnNewLeaderHangs(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	stuck := newGate(t)
	defer stuck.open() // before the cleanup stops b, which would wait for it
	b := el.add("b", func(c *Config) { c.Callbacks.OnNewLeader = func(string) { stuck.wait() } })
	get := serveHealth(t, el, b.e)
	called := el.clk.Now()
	waitFor(t, "OnNewLeader to be called", func() bool { return stuck.entered.Load() == 1 })
	for i := 0; i < 3; i++ {
		el.step(t, testRetry) // b's loop runs on
	}
	livezFailsBy(t, el, get, called.Add(testLease), "OnNewLeader")
}

func TestFollowerWithStoreDownStaysLiveAndReportsIt(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	waitFor(t, "a to lead", a.e.IsLeader)
	fb := &faultLock{Interface: el.store.Lock("b")}
	fb.fail.Store(true)
	b := el.add("b", func(c *Config) { c.Lock = fb })
	get := serveHealth(t, el, b.e)
	for i := 0; i < 20; i++ {
		el.step(t, testRetry)
		if code, body := get("/livez"); code != http.StatusOK {
			t.Fatalf("after %d failed reads a follower's /livez failed: %d %s", fb.attempts.Load(), code, body)
		}
	}
	if code, body := get("/readyz"); code != http.StatusInternalServerError || !strings.Contains(body, "[-]store failed") {
		t.Errorf("/readyz with the store down: %d %s", code, body)
	}
	if code, body := get("/readyz/store"); code != http.StatusInternalServerError || !strings.Contains(body, "injected store failure") {
		t.Errorf("/readyz/store with the store down: %d %s", code, body)
	}
	_, body := get("/status")
	var st healthz.Status
	if err := json.Unmarshal([]byte(body), &st); err != nil || !strings.Contains(st.StoreError, "injected store failure") || st.StoreErrorSince.IsZero() {
		t.Errorf("/status with the store down: %s (%v)", body, err)
	}
	fb.fail.Store(false)
	el.step(t, 3*testRetry)
	waitFor(t, "b to read the store again", func() bool { return b.e.GetLeader() == "a" && b.e.Status().StoreError == "" })
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after the store came back: %d %s", code, body)
	}
}
