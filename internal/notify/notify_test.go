package notify

import (
	"context"
	"testing"
	"time"
)

func TestNotifyCoalescesAndClosesWithContext(t *testing.T) {
	var h Hub
	ctx, cancel := context.WithCancel(context.Background())
	a, b := h.Subscribe(ctx), h.Subscribe(context.Background())
	for i := 0; i < 5; i++ {
		h.Notify() // never blocks, whatever the readers do
	}
	for name, ch := range map[string]<-chan struct{}{"a": a, "b": b} {
		select {
		case <-ch:
		default:
			t.Fatalf("%s got no signal", name)
		}
		select {
		case <-ch:
			t.Fatalf("%s got a second signal for coalesced notifies", name)
		default:
		}
	}
	cancel()
	select {
	case _, open := <-a:
		if open {
			t.Fatal("a signalled instead of closing")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a not closed after its context ended")
	}
	deadline := time.Now().Add(10 * time.Second)
	for h.Len() != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers after one left, want 1", h.Len())
		}
		time.Sleep(time.Millisecond)
	}
	h.Notify()
	if _, open := <-b; !open {
		t.Fatal("b closed")
	}
}
