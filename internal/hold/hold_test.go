package hold_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/hold"
	"github.com/b3df926d/leaderelection/internal/poll"
)

func TestOpenGateLetsCallersThrough(t *testing.T) {
	var g hold.Gate
	if err := g.Wait(context.Background()); err != nil {
		t.Fatalf("Wait on an open gate: %v", err)
	}
	ran := false
	if err := g.Do(context.Background(), func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("Do on an open gate: ran %v, err %v", ran, err)
	}
}

func TestHeldGateWaitsUntilResumedOrContextEnds(t *testing.T) {
	var g hold.Gate
	resume := g.Hold()
	done := make(chan error, 1)
	go func() { done <- g.Wait(context.Background()) }()
	poll.Until(t, "a caller to wait", 10*time.Second, func() bool { return g.Waiting() == 1 })
	select {
	case err := <-done:
		t.Fatalf("Wait on a held gate returned %v", err)
	default:
	}
	resume()
	resume() // more than once is fine
	if err := <-done; err != nil {
		t.Fatalf("Wait after resume: %v", err)
	}
	if g.Held() {
		t.Fatal("gate still held after resume")
	}

	defer g.Hold()()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with an ended context on a held gate = %v, want context.Canceled", err)
	}
	if g.Waiting() != 0 {
		t.Fatalf("Waiting() = %d after the caller gave up", g.Waiting())
	}
}

// A Hold returns only once the Do calls that passed before it have
// returned, and resuming an earlier Hold leaves a later one in place.
func TestHoldWaitsForCallsInFlight(t *testing.T) {
	var g hold.Gate
	inside, leave := make(chan struct{}), make(chan struct{})
	go func() {
		_ = g.Do(context.Background(), func() error { close(inside); <-leave; return nil })
	}()
	<-inside
	held := make(chan func(), 1)
	go func() { held <- g.Hold() }()
	poll.Until(t, "Hold to be made", 10*time.Second, g.Held)
	select {
	case <-held:
		t.Fatal("Hold returned while a Do that passed before it still ran")
	default:
	}
	close(leave)
	first := <-held
	second := g.Hold()
	first()
	if !g.Held() {
		t.Fatal("resuming an earlier Hold opened a later one")
	}
	second()
	if g.Held() {
		t.Fatal("gate still held after every resume")
	}
}
