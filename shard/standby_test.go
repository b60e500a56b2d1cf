//go:build unix

package shard

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/lock"
)

// Options.Standby under RunOrDie (runServed): the replica asks for no
// slot handle before Standby calls ready, /readyz/standby fails until
// then, every shard runs once it has, and Standby's context ends only
// after every shard's function has returned.
func TestStandbyWarmsBeforeASlotAndOutlivesTheShards(t *testing.T) {
	const shards = 3
	dir := t.TempDir()
	var warm atomic.Bool // Standby has called ready
	var running atomic.Int32
	started := make(chan int, shards)
	addr := make(chan string, 1)
	log := funcr.New(func(prefix, args string) {
		if i := strings.Index(args, `"addr"="`); i >= 0 && strings.Contains(args, "Health server listening") {
			a := args[i+len(`"addr"="`):]
			addr <- a[:strings.Index(a, `"`)]
		}
	}, funcr.Options{})
	goAhead := make(chan struct{})
	standbyEnded := make(chan int32, 1)
	opt := Options{
		Name: "warm", Slots: 2, LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second,
		Logger: &log,
		Locks: func(name string, _ bool) (lock.Interface, error) {
			if strings.Contains(name, "-slot-") && !warm.Load() {
				t.Errorf("a handle on slot record %s before Standby called ready", name)
			}
			return file.New(context.Background(), file.Options{Path: filepath.Join(dir, name), Identity: "a"})
		},
		Standby: func(ctx context.Context, ready func()) {
			<-goAhead
			warm.Store(true)
			ready()
			<-ctx.Done()
			standbyEnded <- running.Load()
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- runServed(ctx, healthz.Options{Addr: "127.0.0.1:0"}, opt, shards, func(ctx context.Context, s int) {
			running.Add(1)
			select {
			case started <- s:
			default: // started again: counted once is enough
			}
			<-ctx.Done()
			time.Sleep(50 * time.Millisecond) // the work at hand, not synchronisation
			running.Add(-1)
		})
	}()
	readyz := "http://" + within(t, "the health server's address", addr) + "/readyz/standby"
	if code, body := get(t, readyz); code == http.StatusOK || !strings.Contains(body, ErrStandbyNotReady.Error()) {
		t.Fatalf("/readyz/standby before Standby called ready: %d %q, want a failure naming %v", code, body, ErrStandbyNotReady)
	}
	close(goAhead)
	for range shards {
		select {
		case <-started:
		case err := <-done:
			t.Fatalf("Run returned %v before running its shards", err)
		case <-time.After(time.Minute):
			t.Fatal("the shards did not start within a minute of Standby calling ready")
		}
	}
	poll.Until(t, "/readyz/standby to pass", 10*time.Second, func() bool { code, _ := get(t, readyz); return code == http.StatusOK })
	cancel()
	if err := within(t, "Run to return", done); err != nil {
		t.Fatalf("RunOrDie's run returned %v after its context ended", err)
	}
	if n := within(t, "Standby's context to end", standbyEnded); n != 0 {
		t.Fatalf("Standby's context ended with %d shard functions still running", n)
	}
}

// A Standby that returns without calling ready ends Run with an error
// saying so, rather than leaving a replica that never takes part.
func TestStandbyReturningUnreadyEndsRun(t *testing.T) {
	dir := t.TempDir()
	opt := Options{
		Name: "cold",
		Locks: func(name string, _ bool) (lock.Interface, error) {
			return file.New(context.Background(), file.Options{Path: filepath.Join(dir, name), Identity: "a"})
		},
		Standby: func(context.Context, func()) {},
	}
	err := Run(context.Background(), opt, 2, func(ctx context.Context, _ int) { <-ctx.Done() })
	if err == nil || !strings.Contains(err.Error(), "Options.Standby returned without calling ready") {
		t.Fatalf("Run with a Standby that never calls ready returned %v", err)
	}
}

// within receives from ch, failing t after a minute.
func within[T any](t *testing.T, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(time.Minute):
		t.Fatalf("no %s within a minute", what)
		panic("unreachable")
	}
}

// get returns the status code and body of a GET of url.
func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, string(b)
}
