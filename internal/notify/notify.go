// Package notify fans one stream of "something changed" signals out to many
// subscribers, coalescing signals for slow readers. Backends use it to
// implement lock.Watcher.
package notify

import (
	"context"
	"sync"
)

// Hub delivers Notify calls to every live subscriber. The zero value is ready.
type Hub struct {
	mu     sync.Mutex
	subs   map[chan struct{}]struct{}
	around func(sub <-chan struct{}, send func()) // see SignalAround
}

// SignalAround makes Notify signal each subscriber by calling around with
// the subscriber's channel and a function that sends the signal, which
// around must call once; nil restores the plain send. Notify holds the
// hub's lock throughout, so around must not call the hub. Tests use it to
// note that a subscriber has a signal pending in the same step as it gets
// it, before the receiver can run.
func (h *Hub) SignalAround(around func(sub <-chan struct{}, send func())) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.around = around
}

// Subscribe returns a channel with a buffer of one that receives a value after
// each Notify (coalesced), and is closed once ctx is done.
func (h *Hub) Subscribe(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	if h.subs == nil {
		h.subs = make(map[chan struct{}]struct{})
	}
	h.subs[ch] = struct{}{}
	h.mu.Unlock()
	context.AfterFunc(ctx, func() {
		h.mu.Lock()
		delete(h.subs, ch)
		h.mu.Unlock()
		close(ch)
	})
	return ch
}

// Notify signals every subscriber without blocking.
func (h *Hub) Notify() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		if h.around != nil {
			h.around(ch, func() { signal(ch) })
		} else {
			signal(ch)
		}
	}
}

// signal sends on ch unless a signal is already pending there.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Len reports how many subscribers are live.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.subs)
}
