// Package hold is the one hold/resume gate of the tests: a store, a
// proxy or a lock wrapper that must stop answering for a while, as a hung
// server or a partition would, and go on when the test resumes it.
package hold

import (
	"context"
	"sync"
)

// Gate holds the callers of Wait (and Do) while it is held. The zero value
// is open.
type Gate struct {
	mu      sync.Mutex
	held    chan struct{} // non-nil while held; closed by its resume
	waiting int           // callers in Wait on a hold
	busy    int           // Do calls past the gate, not yet returned
	idle    *sync.Cond    // on mu: busy went down
}

// Hold makes callers wait until resume is called (more than once is
// fine). It returns once no Do that passed the gate before is still
// running, so that nothing the caller did not hold sees what it does next.
// A later Hold replaces this one; resuming an earlier Hold then wakes only
// the callers that waited on it, and they wait again on the later one.
func (g *Gate) Hold() (resume func()) {
	held := make(chan struct{})
	g.mu.Lock()
	g.held = held
	for g.busy > 0 {
		if g.idle == nil {
			g.idle = sync.NewCond(&g.mu)
		}
		g.idle.Wait()
	}
	g.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.mu.Lock()
			if g.held == held {
				g.held = nil
			}
			g.mu.Unlock()
			close(held)
		})
	}
}

// Held reports whether the gate is held now.
func (g *Gate) Held() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held != nil
}

// Waiting reports how many callers wait on a hold now.
func (g *Gate) Waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.waiting
}

// Wait returns nil at once if the gate is open, else once it is resumed,
// or ctx's error if ctx ends first.
func (g *Gate) Wait(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pass(ctx)
}

// pass is Wait with g.mu held; it returns with g.mu held.
func (g *Gate) pass(ctx context.Context) error {
	for g.held != nil {
		held := g.held
		g.waiting++
		g.mu.Unlock()
		select {
		case <-held:
		case <-ctx.Done():
		}
		g.mu.Lock()
		g.waiting--
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return nil
}

// Do waits as Wait does, then runs f; a Hold made meanwhile returns only
// once f has.
func (g *Gate) Do(ctx context.Context, f func() error) error {
	g.mu.Lock()
	if err := g.pass(ctx); err != nil {
		g.mu.Unlock()
		return err
	}
	g.busy++
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		g.busy--
		if g.idle != nil {
			g.idle.Broadcast()
		}
		g.mu.Unlock()
	}()
	return f()
}
