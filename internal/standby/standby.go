// Package standby runs a warm standby (leaderelection.Option.Standby,
// shard.Options.Standby): work every candidate does whether or not it
// leads, started before the campaign and ended after the election.
package standby

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

// Errors names the option and the errors a Runner reports.
type Errors struct {
	// Field names the option in messages ("Option.Standby").
	Field string
	// NotReady is Check's error until the standby calls ready.
	NotReady error
	// StopTimeout is wrapped by Stop's error when the standby outlives
	// its context by the timeout.
	StopTimeout error
}

// Runner runs one standby function.
type Runner struct {
	errs      Errors
	ready     chan struct{} // closed by the ready func the standby is given
	readyOnce sync.Once
	done      chan struct{} // closed when the standby has returned
	cancel    context.CancelFunc
}

// Start starts fn with a context that does not end with ctx (the caller
// ends it, with Stop, once the election is over, so that the leader's
// work never outlives its caches) but carries its values and log.
func Start(ctx context.Context, log logr.Logger, errs Errors, fn func(context.Context, func())) *Runner {
	r := &Runner{errs: errs, ready: make(chan struct{}), done: make(chan struct{})}
	sctx, cancel := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), log))
	r.cancel = cancel
	go func() {
		defer close(r.done)
		fn(sctx, func() { r.readyOnce.Do(func() { close(r.ready) }) })
	}()
	return r
}

// Check is the "standby" readiness check: nil once the standby called
// ready.
func (r *Runner) Check() error {
	select {
	case <-r.ready:
		return nil
	default:
		return r.errs.NotReady
	}
}

// AwaitReady waits until the standby reports ready (true), or ctx ends
// (false, nil), or the standby returns without reporting ready (an
// error).
func (r *Runner) AwaitReady(ctx context.Context) (bool, error) {
	select {
	case <-r.ready:
		return true, nil
	case <-ctx.Done():
		return false, nil
	case <-r.done:
		select {
		case <-r.ready:
			return true, nil
		default:
		}
		return false, errors.New(r.errs.Field + " returned without calling ready: the candidate would never campaign")
	}
}

// Stop ends the standby's context and waits for it to return, up to
// timeout.
func (r *Runner) Stop(timeout time.Duration) error {
	r.cancel()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-r.done:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: %s still runs %v after its context ended", r.errs.StopTimeout, r.errs.Field, timeout)
	}
}
