package leaderelection

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
)

// ErrStandbyNotReady is the "standby" readiness check's error while
// Option.Standby has not called ready.
var ErrStandbyNotReady = errors.New("Option.Standby has not reported ready (it calls ready once its caches are warm)")

// standby runs Option.Standby from Run's start until the election has
// ended: on every candidate, leading or not, across lost terms.
type standby struct {
	ready     chan struct{} // closed by the ready func Standby is given
	readyOnce sync.Once
	done      chan struct{} // closed when Standby has returned
	cancel    context.CancelFunc
}

// startStandby starts fn with a context that does not end with ctx (Run
// ends it, with stop, once the election is over, so that the leader's
// function never outlives its caches) but carries its values.
func startStandby(ctx context.Context, log logr.Logger, fn func(context.Context, func())) *standby {
	s := &standby{ready: make(chan struct{}), done: make(chan struct{})}
	sctx, cancel := context.WithCancel(klog.NewContext(context.WithoutCancel(ctx), log))
	s.cancel = cancel
	go func() {
		defer close(s.done)
		fn(sctx, func() { s.readyOnce.Do(func() { close(s.ready) }) })
	}()
	return s
}

// check is the "standby" readiness check.
func (s *standby) check() error {
	select {
	case <-s.ready:
		return nil
	default:
		return ErrStandbyNotReady
	}
}

// awaitReady waits until Standby reports ready (true), or ctx ends
// (false, nil), or Standby returns without reporting ready (an error).
func (s *standby) awaitReady(ctx context.Context) (bool, error) {
	select {
	case <-s.ready:
		return true, nil
	case <-ctx.Done():
		return false, nil
	case <-s.done:
		select {
		case <-s.ready:
			return true, nil
		default:
		}
		return false, errors.New("Option.Standby returned without calling ready: the candidate would never campaign")
	}
}

// stop ends Standby's context and waits for it to return, up to timeout.
func (s *standby) stop(timeout time.Duration) error {
	s.cancel()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-s.done:
		return nil
	case <-t.C:
		return fmt.Errorf("%w: Option.Standby still runs %v after its context ended", ErrStopTimeout, timeout)
	}
}
