package leaderelection

import (
	"context"
	"time"

	"k8s.io/utils/clock"
)

// bootTime is the elector's view of boot time (see Elector.boot).
func (e *Elector) bootTime() (time.Duration, bool) {
	if e.boot == nil {
		return 0, false
	}
	return e.boot()
}

// attempt is when a write to the store started, on the elector's clock and
// on the boot clock (see Elector.boot), if the platform has one: a term is
// measured from the start of its last good write.
type attempt struct {
	start     time.Time
	boot      time.Duration
	bootKnown bool
}

func (e *Elector) startAttempt() attempt {
	a := attempt{start: e.clock.Now()}
	a.boot, a.bootKnown = e.bootTime()
	return a
}

// afterFunc runs f after d on the elector's clock, and at once if d is not
// positive (a fake clock would otherwise wait for its next step).
func (e *Elector) afterFunc(d time.Duration, f func()) clock.Timer {
	if d <= 0 {
		f()
		return firedTimer{}
	}
	return e.clock.AfterFunc(d, f)
}

// newTimer is clock.NewTimer that fires at once if d is not positive.
func (e *Elector) newTimer(d time.Duration) clock.Timer {
	if d <= 0 {
		t := firedTimer{c: make(chan time.Time, 1)}
		t.c <- e.clock.Now()
		return t
	}
	return e.clock.NewTimer(d)
}

// firedTimer is a timer that has already fired.
type firedTimer struct{ c chan time.Time }

func (t firedTimer) C() <-chan time.Time { return t.c }

func (firedTimer) Stop() bool { return false }

func (firedTimer) Reset(d time.Duration) bool { panic("firedTimer.Reset") }

// attemptCtx bounds one store call: it ends at deadline on the elector's
// clock, and does not end with parent (so a stopping leader can still renew
// and release).
func (e *Elector) attemptCtx(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	t := e.afterFunc(d, cancel)
	return ctx, func() { t.Stop(); cancel() }
}
