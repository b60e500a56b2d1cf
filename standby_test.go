package leaderelection

import (
	"context"
	"errors"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// A candidate on the file backend, through Run, with a Standby: /readyz
// fails ("standby") and the candidate does not campaign until Standby
// reports ready; the leader's function starts warm; a lost lease ends the
// function, not Standby, which keeps its one context across the next term
// (Recampaign); Run ends Standby's context only after the election, and
// returns once it has returned.
func TestStandbyWarmsBeforeTheCampaignAndOutlivesALostTerm(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leader.json")
	fl, err := file.New(context.Background(), file.Options{Path: path, Identity: "a"})
	if err != nil {
		t.Fatal(err)
	}
	fa := &faultLock{Interface: fl}
	warm := make(chan struct{})
	var (
		standbyStarts, standbyEnds atomic.Int32
		standbyCtx                 atomic.Pointer[context.Context]
		isWarm, startedCold        atomic.Bool
		leadCtxs                   = make(chan context.Context, 2)
		le                         Leadership
	)
	port := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, Option{
			Lock: fa, Port: port, HealthBindAddress: "127.0.0.1", Leadership: &le, Recampaign: true,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
			Standby: func(ctx context.Context, ready func()) {
				standbyStarts.Add(1)
				standbyCtx.Store(&ctx)
				defer standbyEnds.Add(1)
				<-warm
				isWarm.Store(true)
				ready()
				<-ctx.Done()
			},
			Run: func(ctx context.Context) {
				if !isWarm.Load() {
					startedCold.Store(true)
				}
				leadCtxs <- ctx
				<-ctx.Done()
			},
		})
	}()
	readyz := "http://127.0.0.1:" + strconv.Itoa(port) + "/readyz/standby"
	waitFor(t, "/readyz/standby to fail before Standby is ready", func() bool {
		code, body := httpGet(t, readyz)
		return code == http.StatusInternalServerError && strings.Contains(body, "has not reported ready")
	})
	if le.Leader() != "" || le.IsLeader() {
		t.Fatalf("the candidate campaigned before Standby was ready: leader %q", le.Leader())
	}
	close(warm)
	first := <-leadCtxs
	if startedCold.Load() {
		t.Fatal("the leader's function started before Standby reported ready")
	}
	if code, body := httpGet(t, readyz); code != http.StatusOK {
		t.Fatalf("/readyz/standby once ready: %d %s", code, body)
	}

	fa.fail.Store(true) // the store is unreachable: the lease is lost
	select {
	case <-first.Done():
	case <-time.After(testTimeout):
		t.Fatal("the leader's function was not cancelled after the lease was lost")
	}
	if err := (*standbyCtx.Load()).Err(); err != nil {
		t.Fatalf("a lost term ended Standby's context: %v", err)
	}
	fa.fail.Store(false)
	second := <-leadCtxs // Recampaign: leads again once its own lease expired
	if term, _ := TermFrom(second); term != 2 {
		t.Fatalf("second term = %d, want 2", term)
	}
	if n, err := standbyStarts.Load(), (*standbyCtx.Load()).Err(); n != 1 || err != nil {
		t.Fatalf("Standby started %d times, context error %v; want once, still running", n, err)
	}
	if code, body := httpGet(t, readyz); code != http.StatusOK {
		t.Fatalf("/readyz/standby after a lost term: %d %s; want ok, the standby still warm", code, body)
	}

	cancel()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run = %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return after cancel")
	}
	if second.Err() == nil || standbyEnds.Load() != 1 {
		t.Fatalf("Run returned with the function's context %v and Standby returned %d times; want both ended", second.Err(), standbyEnds.Load())
	}
}

func TestStandbyReturningWithoutReadyEndsRun(t *testing.T) {
	err := Run(context.Background(), Option{
		Lock: locktest.NewMemoryStore("cold").Lock("a"), Port: NoHealthServer,
		Standby: func(context.Context, func()) {},
		Run:     func(ctx context.Context) { t.Error("the leader's function ran without a ready Standby") },
	})
	if err == nil || !strings.Contains(err.Error(), "Option.Standby returned without calling ready") {
		t.Fatalf("Run = %v, want the Standby error", err)
	}
}

// A Standby that ignores its context holds Run up by StopTimeout at most,
// and Run says so.
func TestStandbyIgnoringItsContextEndsRunWithErrStopTimeout(t *testing.T) {
	stuck := newGate(t)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, Option{
			Lock: locktest.NewMemoryStore("stuck").Lock("a"), Port: NoHealthServer,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second, StopTimeout: time.Second,
			Standby: func(_ context.Context, ready func()) { ready(); stuck.wait() },
			Run:     func(ctx context.Context) { cancel(); <-ctx.Done() },
		})
	}()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrStopTimeout) || !strings.Contains(err.Error(), "Option.Standby still runs") {
			t.Fatalf("Run = %v, want ErrStopTimeout naming Option.Standby", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not return while Standby ignored its context")
	}
}
