// Package gate lets a process's writes through only while it leads: a
// write gate for client-go's rest.Config (Config) and for any other
// client (Check, Do).
//
// The elector drives the gate given to it (leaderelection.Option.Gate,
// Config.Gate): it opens the gate with the term when this process starts
// leading and closes it at its step-down, RenewDeadline after the last
// renewal that began, before any other candidate may take over (that
// waits LeaseDuration). Without the elector, the leader's function opens
// it with its context and term, and it closes when that context ends,
// which the elector cancels at the step-down. A write sent
// through an open gate therefore has the margin LeaseDuration −
// RenewDeadline to reach the store before another leader's term can
// begin; closing the gate also cancels the writes still in flight, so the
// process stops waiting for them. A write that was already sent may still
// land later if the network holds it for longer than that margin: the gate
// cannot recall bytes on the wire. Where the downstream store can check a
// fencing token, pass the term (leaderelection.TermFrom, or what Check
// and Do return) with each write and let the store refuse old terms: that
// is the stronger guarantee.
//
// Reads always pass.
package gate

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrClosed is the error of a write the gate refused or cancelled: this
// process does not lead (or no longer did when the write was in flight).
// Errors the gate returns wrap it; for errors through client-go (which
// turns a refusal into an API status error), use IsRefused.
var ErrClosed = errors.New("leaderelection gate: this process does not lead; writes are refused")

// Gate is a write gate, closed until Open. The zero value is a closed gate
// ready to use. A Gate must not be copied after first use.
type Gate struct {
	mu     sync.Mutex
	term   int64
	ctx    context.Context // of the current open period; nil while closed
	cancel context.CancelCauseFunc
	stop   func() bool // stops the AfterFunc that closes on the leader's context
}

// New returns a closed gate.
func New() *Gate { return &Gate{} }

// Open opens the gate for term until Close is called or ctx ends,
// whichever comes first. The elector calls it when given the gate;
// otherwise call it at the start of the leader's function with the
// leader's context and its term:
//
//	term, _ := leaderelection.TermFrom(ctx)
//	g.Open(ctx, term)
//
// Opening for another term first closes the gate on the previous one (its
// writes in flight are cancelled). Opening again for the same term only
// ties the gate to ctx as well. A ctx that has already ended leaves the
// gate closed.
func (g *Gate) Open(ctx context.Context, term int64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx != nil && g.term != term {
		g.closeLocked()
	}
	if ctx.Err() != nil {
		g.closeLocked()
		return
	}
	if g.ctx == nil {
		g.ctx, g.cancel = context.WithCancelCause(context.Background())
		g.term = term
	}
	open := g.ctx
	stop := context.AfterFunc(ctx, func() { g.closeIf(open) })
	if g.stop != nil {
		prev := g.stop
		g.stop = func() bool { prev(); return stop() }
	} else {
		g.stop = stop
	}
}

// Close closes the gate: later writes are refused and those in flight are
// cancelled. Closing a closed gate does nothing.
func (g *Gate) Close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closeLocked()
}

// closeIf closes the gate if it is still in the open period open.
func (g *Gate) closeIf(open context.Context) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx == open {
		g.closeLocked()
	}
}

func (g *Gate) closeLocked() {
	if g.ctx == nil {
		return
	}
	g.cancel(ErrClosed)
	g.stop()
	g.ctx, g.cancel, g.stop, g.term = nil, nil, nil, 0
}

// Check returns the term the gate is open for, or an error wrapping
// ErrClosed.
func (g *Gate) Check() (int64, error) {
	_, term, err := g.current()
	return term, err
}

// current returns the context of the open period (cancelled, with cause
// ErrClosed, when the gate closes) and its term.
func (g *Gate) current() (context.Context, int64, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx == nil {
		return nil, 0, ErrClosed
	}
	return g.ctx, g.term, nil
}

// Do runs write if the gate is open, with a context that ends when ctx
// does or when the gate closes, and the term to pass to a store that
// checks fencing tokens. It returns an error wrapping ErrClosed, without
// calling write, if the gate is closed; and, if the gate closed while
// write ran, an error wrapping both ErrClosed and write's error.
func (g *Gate) Do(ctx context.Context, write func(ctx context.Context, term int64) error) error {
	wctx, term, release, err := g.bind(ctx)
	if err != nil {
		return err
	}
	return release(write(wctx, term))
}

// bind returns, if the gate is open, a context derived from parent that
// is also cancelled (cause ErrClosed) when the gate closes, with the term;
// release must be called once the work is done, with its error: it stops
// watching the gate and returns the error, wrapping ErrClosed too if the
// gate closed meanwhile. A closed gate returns an error wrapping
// ErrClosed.
func (g *Gate) bind(parent context.Context) (ctx context.Context, term int64, release func(error) error, err error) {
	open, term, err := g.current()
	if err != nil {
		return nil, 0, nil, err
	}
	ctx, cancel := context.WithCancelCause(parent)
	stop := context.AfterFunc(open, func() { cancel(ErrClosed) })
	release = func(err error) error {
		stop()
		cancel(nil)
		if err != nil && open.Err() != nil {
			return fmt.Errorf("%w (term %d ended while the write ran): %w", ErrClosed, term, err)
		}
		return err
	}
	return ctx, term, release, nil
}
