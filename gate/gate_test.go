package gate

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestClosedUntilOpenedAndClosedWithTheLeadersContext(t *testing.T) {
	var g Gate
	if _, err := g.Check(); !errors.Is(err, ErrClosed) {
		t.Fatalf("new gate: Check = %v, want ErrClosed", err)
	}
	lead, stepDown := context.WithCancel(context.Background())
	g.Open(lead, 7)
	if term, err := g.Check(); err != nil || term != 7 {
		t.Fatalf("open gate: Check = %d, %v; want 7", term, err)
	}
	stepDown()
	waitClosed(t, &g)
}

func TestOpenForANewTermEndsThePreviousOne(t *testing.T) {
	g := New()
	g.Open(context.Background(), 1)
	first, _, _ := g.current()
	g.Open(context.Background(), 2)
	if context.Cause(first) != ErrClosed {
		t.Fatalf("term 1's writes were not cancelled when term 2 opened: cause %v", context.Cause(first))
	}
	if term, err := g.Check(); err != nil || term != 2 {
		t.Fatalf("Check = %d, %v; want 2", term, err)
	}
	g.Close()
	if _, err := g.Check(); !errors.Is(err, ErrClosed) {
		t.Fatalf("after Close: Check = %v, want ErrClosed", err)
	}
	g.Close() // closing a closed gate does nothing
}

func TestOpenWithAnEndedContextStaysClosed(t *testing.T) {
	g := New()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	g.Open(ctx, 3)
	if _, err := g.Check(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Check = %v, want ErrClosed", err)
	}
}

// An old term's context ending after a new term opened must not close the
// new one.
func TestAnEndedOldTermDoesNotCloseTheNewOne(t *testing.T) {
	g := New()
	old, endOld := context.WithCancel(context.Background())
	g.Open(old, 1)
	g.Open(context.Background(), 2)
	endOld()
	deadline := time.Now().Add(time.Second)
	for time.Now().Before(deadline) {
		if _, err := g.Check(); err != nil {
			t.Fatalf("term 1's context closed term 2's gate: %v", err)
		}
		time.Sleep(10 * time.Millisecond) // giving a wrong AfterFunc its chance to run
	}
}

func TestDoRefusesWhileClosedAndCancelsWhenTheGateCloses(t *testing.T) {
	g := New()
	called := false
	err := g.Do(context.Background(), func(context.Context, int64) error { called = true; return nil })
	if !errors.Is(err, ErrClosed) || called {
		t.Fatalf("Do on a closed gate = %v (write called: %v), want ErrClosed without a call", err, called)
	}
	lead, stepDown := context.WithCancel(context.Background())
	g.Open(lead, 4)
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- g.Do(context.Background(), func(ctx context.Context, term int64) error {
			if term != 4 {
				return errors.New("wrong term")
			}
			close(started)
			<-ctx.Done() // a write that waits on its store
			return ctx.Err()
		})
	}()
	<-started
	stepDown()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) || !errors.Is(err, context.Canceled) {
			t.Fatalf("Do = %v, want ErrClosed and the write's context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the write in flight was not cancelled when the gate closed")
	}
}

func waitClosed(t *testing.T, g *Gate) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := g.Check(); errors.Is(err, ErrClosed) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the gate is still open 10s after the leader's context ended")
		}
		time.Sleep(time.Millisecond) // the close runs in context.AfterFunc's goroutine
	}
}
