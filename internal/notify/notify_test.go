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

// SignalAround wraps each subscriber's signal, with that subscriber's
// channel, and the signal is sent when (and only when) around sends it.
func TestSignalAroundWrapsEachSubscribersSignal(t *testing.T) {
	var h Hub
	a, b := h.Subscribe(context.Background()), h.Subscribe(context.Background())
	var wrapped []<-chan struct{}
	h.SignalAround(func(sub <-chan struct{}, send func()) {
		if len(sub) != 0 {
			t.Errorf("a signal pending before around sent it")
		}
		send()
		if len(sub) != 1 {
			t.Errorf("no signal pending after around sent it")
		}
		wrapped = append(wrapped, sub)
	})
	h.Notify()
	if len(wrapped) != 2 || !(wrapped[0] == a && wrapped[1] == b || wrapped[0] == b && wrapped[1] == a) {
		t.Fatalf("around wrapped %v, want each of %v and %v once", wrapped, a, b)
	}
	<-a
	<-b
	h.SignalAround(nil)
	h.Notify()
	if len(a) != 1 || len(b) != 1 || len(wrapped) != 2 {
		t.Fatalf("after SignalAround(nil): pending %d and %d, around called %d times; want 1, 1 and 2", len(a), len(b), len(wrapped))
	}
}
