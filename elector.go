package leaderelection

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/lock"
)

// Errors Run returns.
var (
	// ErrLeaseLost: this process led, and stopped because it could not
	// renew within RenewDeadline (or another candidate holds the lock).
	ErrLeaseLost = errors.New("leaderelection: lease lost")
	// ErrStopTimeout: the leader's function did not return within
	// StopTimeout after its context was cancelled. The lock was not
	// released.
	ErrStopTimeout = errors.New("leaderelection: leader function did not return in time")
)

type termKey struct{}

// TermFrom returns the term (fencing token) carried by a leader context:
// the record's LeaderTransitions when this process acquired the lock. It is
// strictly increasing per lock, so downstream stores can reject writes from
// an older term.
func TermFrom(ctx context.Context) (int64, bool) {
	t, ok := ctx.Value(termKey{}).(int64)
	return t, ok
}

// Elector campaigns for a lock and runs the leader's function while it holds
// it. Create one with NewElector; call Run once.
type Elector struct {
	c        Config
	clock    clock.WithDelayedExecution
	identity string
	desc     string
	leaseSec int

	mu            sync.Mutex
	observed      lock.Record
	observedRaw   []byte
	observedAt    time.Time
	leading       bool
	term          int64
	acquiredAt    time.Time
	lastGoodStart time.Time // start of the last successful acquire or renew
	lastRenew     time.Time
	holdOff       time.Time // after a term-limit hand-over: leave a free lock to others until then

	leaders chan string // to the OnNewLeader goroutine
	ran     bool

	// park, if set (by tests), is called with true just before the elector
	// blocks waiting for a timer or signal, and with false when it wakes.
	park func(parked bool)
}

func (e *Elector) parked(p bool) {
	if e.park != nil {
		e.park(p)
	}
}

// NewElector validates c and returns an elector.
func NewElector(c Config) (*Elector, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = c.LeaseDuration
	}
	if c.Name == "" {
		c.Name = c.Lock.Describe()
	}
	return &Elector{
		c:        c,
		clock:    c.Clock,
		identity: c.Lock.Identity(),
		desc:     c.Lock.Describe(),
		leaseSec: int(math.Ceil(c.LeaseDuration.Seconds())),
	}, nil
}

// IsLeader reports whether this process holds the lock now.
func (e *Elector) IsLeader() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leading
}

// GetLeader returns the last observed holder, or "" if none.
func (e *Elector) GetLeader() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.observed.HolderIdentity
}

// Term returns the current term while leading, else the last term this
// process held (0 if it never led).
func (e *Elector) Term() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.term
}

// Status returns a snapshot of the elector's state.
func (e *Elector) Status() healthz.Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := healthz.Status{
		Name:          e.c.Name,
		Identity:      e.identity,
		Lock:          e.desc,
		Leading:       e.leading,
		Leader:        e.observed.HolderIdentity,
		Term:          e.term,
		Transitions:   int64(e.observed.LeaderTransitions),
		LastRenew:     e.lastRenew,
		LeaseDuration: e.c.LeaseDuration,
	}
	if !e.observedAt.IsZero() && e.observed.HolderIdentity != "" {
		s.Expiry = e.observedAt.Add(e.recordLease(e.observed))
	}
	return s
}

// recordLease is how long the holder of rec promised its lease lasts.
func (e *Elector) recordLease(rec lock.Record) time.Duration {
	if rec.LeaseDurationSeconds > 0 {
		return time.Duration(rec.LeaseDurationSeconds) * time.Second
	}
	return e.c.LeaseDuration
}

// Run campaigns until ctx ends, leading whenever it holds the lock. It
// returns nil after ctx ends or the leader's function returns by itself,
// ErrLeaseLost (wrapped) after losing the lock, and ErrStopTimeout (wrapped)
// if the leader's function ignored its cancelled context. Run may be called
// once.
func (e *Elector) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.ran {
		e.mu.Unlock()
		return errors.New("leaderelection: Elector.Run called twice")
	}
	e.ran = true
	e.mu.Unlock()

	log := klog.FromContext(ctx)
	if e.c.Logger != nil {
		log = *e.c.Logger
	}
	log = log.WithValues("lock", e.desc, "identity", e.identity)

	if e.c.Callbacks.OnNewLeader != nil {
		e.leaders = make(chan string, 1)
		done := make(chan struct{})
		go e.deliverLeaders(done)
		defer func() { close(e.leaders); <-done }()
	}

	var changes <-chan struct{}
	if w, ok := e.c.Lock.(lock.Watcher); ok {
		watchCtx, stop := context.WithCancel(ctx)
		defer stop()
		changes = w.Changes(watchCtx)
	}

	for {
		if !e.campaign(ctx, log, changes) {
			return nil
		}
		handedOver, err := e.lead(ctx, log)
		if err != nil || !handedOver {
			return err
		}
	}
}

// deliverLeaders calls OnNewLeader from one goroutine, with the newest
// holder, so that a slow callback never holds up the elector.
func (e *Elector) deliverLeaders(done chan<- struct{}) {
	defer close(done)
	for id := range e.leaders {
		e.c.Callbacks.OnNewLeader(id)
	}
}

// observe records what was read or written; it resets the observation time
// only when the record changed, so expiry is measured on this clock from the
// last change seen.
func (e *Elector) observe(rec lock.Record, raw []byte) {
	now := e.clock.Now() // never call the clock under e.mu: fake clocks run callbacks under their lock
	e.mu.Lock()
	changed := raw == nil || string(raw) != string(e.observedRaw)
	prev := e.observed.HolderIdentity
	if changed {
		e.observed, e.observedRaw, e.observedAt = rec, raw, now
	}
	e.mu.Unlock()
	if rec.HolderIdentity != prev && e.leaders != nil {
		select { // keep only the newest holder if the callback lags
		case <-e.leaders:
		default:
		}
		e.leaders <- rec.HolderIdentity
	}
}

// campaign returns true once this process holds the lock, false when ctx
// ends.
func (e *Elector) campaign(ctx context.Context, log logr.Logger, changes <-chan struct{}) bool {
	log.Info("Campaigning for the lock")
	for {
		next, acquired := e.tryAcquire(ctx, log)
		if acquired {
			return true
		}
		timer := e.newTimer(next)
		e.parked(true)
		select {
		case <-ctx.Done():
			e.parked(false)
			timer.Stop()
			return false
		case <-timer.C():
			e.parked(false)
		case _, open := <-changes:
			e.parked(false)
			timer.Stop()
			if !open {
				changes = nil
			}
		}
	}
}

// pollDelay is how long a follower waits before reading again when nothing
// else will wake it.
func (e *Elector) pollDelay(haveWatcher bool) time.Duration {
	if haveWatcher {
		// The watch wakes us; this read is only a safety net.
		return e.c.LeaseDuration
	}
	return wait.Jitter(e.c.RetryPeriod, JitterFactor)
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

func (t firedTimer) C() <-chan time.Time      { return t.c }
func (firedTimer) Stop() bool                 { return false }
func (firedTimer) Reset(d time.Duration) bool { panic("firedTimer.Reset") }

// attemptCtx bounds one store call: it ends at deadline on the elector's
// clock, and does not end with parent (so a stopping leader can still renew
// and release).
func (e *Elector) attemptCtx(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	t := e.afterFunc(d, cancel)
	return ctx, func() { t.Stop(); cancel() }
}

// tryAcquire reads the record and takes the lock if it is free or expired.
// It returns how long to wait before trying again.
func (e *Elector) tryAcquire(ctx context.Context, log logr.Logger) (time.Duration, bool) {
	_, haveWatcher := e.c.Lock.(lock.Watcher)
	start := e.clock.Now()
	actx, cancel := e.attemptCtx(ctx, e.c.RenewDeadline)
	defer cancel()
	if ctx.Err() != nil {
		return 0, false
	}
	rec, raw, err := e.c.Lock.Get(actx)
	next := lock.Record{
		HolderIdentity:       e.identity,
		LeaseDurationSeconds: e.leaseSec,
		AcquireTime:          metav1.NewTime(start),
		RenewTime:            metav1.NewTime(start),
	}
	switch {
	case lock.IsNotFound(err):
		next.LeaderTransitions = 1
		err = e.c.Lock.Create(actx, next)
	case err != nil:
		log.Error(err, "Reading the lock failed")
		return wait.Jitter(e.c.RetryPeriod, JitterFactor), false
	default:
		e.observe(*rec, raw)
		e.mu.Lock()
		expiry := e.observedAt.Add(e.recordLease(*rec))
		holdOff := e.holdOff
		e.mu.Unlock()
		now := e.clock.Now()
		if rec.HolderIdentity != "" && now.Before(expiry) {
			// Held (by another, or by an earlier incarnation of this
			// identity, which may still be running). Wake at the exact
			// expiry instant if nothing else wakes us first.
			log.V(4).Info("Lock is held", "holder", rec.HolderIdentity, "expiresIn", expiry.Sub(now))
			return min(expiry.Sub(now), e.pollDelay(haveWatcher)), false
		}
		if rec.HolderIdentity == "" && now.Before(holdOff) {
			return min(holdOff.Sub(now), e.pollDelay(haveWatcher)), false
		}
		next.LeaderTransitions = rec.LeaderTransitions + 1
		err = e.c.Lock.Update(actx, next)
	}
	if err != nil {
		if lock.IsConflict(err) {
			log.V(2).Info("Lost the race for the lock", "err", err)
			return 0, false // read again at once: someone else wrote
		}
		log.Error(err, "Acquiring the lock failed")
		return wait.Jitter(e.c.RetryPeriod, JitterFactor), false
	}
	if ctx.Err() != nil {
		// Acquired just as we were told to stop: give it back so nobody
		// waits out a lease nobody uses.
		e.observe(next, nil)
		e.mu.Lock()
		e.term = int64(next.LeaderTransitions)
		e.mu.Unlock()
		if e.c.ReleaseOnCancel {
			e.release(ctx, log, next)
		}
		return 0, false
	}
	e.observe(next, nil)
	now := e.clock.Now()
	e.mu.Lock()
	e.leading, e.term, e.acquiredAt, e.lastGoodStart, e.lastRenew = true, int64(next.LeaderTransitions), start, start, now
	e.mu.Unlock()
	log.Info("Acquired the lock", "term", next.LeaderTransitions)
	e.c.Lock.RecordEvent("became leader")
	return 0, true
}

// stopCause says why a term ends.
type stopCause int

const (
	causeNone       stopCause = iota
	causeCancelled            // Run's context ended
	causeTermLimit            // TermLimit reached
	causeFuncReturn           // the leader's function returned by itself
)

// lead runs the leader's function and renews until the term ends. It
// returns handedOver=true when the term ended by TermLimit and the elector
// should campaign again.
func (e *Elector) lead(ctx context.Context, log logr.Logger) (handedOver bool, err error) {
	e.mu.Lock()
	term, acquiredAt, goodStart := e.term, e.acquiredAt, e.lastGoodStart
	e.mu.Unlock()
	log = log.WithValues("term", term)

	leaderCtx, cancelLeader := context.WithCancel(context.WithValue(ctx, termKey{}, term))
	defer cancelLeader()
	fnDone := make(chan struct{})
	go func() {
		defer close(fnDone)
		e.c.Callbacks.OnStartedLeading(leaderCtx)
	}()

	// The step-down timer fires RenewDeadline after the start of the last
	// good renewal, independently of the renew loop, so the leader's
	// context is cancelled on time even if a store call hangs.
	lost := make(chan struct{})
	var lostOnce sync.Once
	stepDown := func() {
		lostOnce.Do(func() {
			e.mu.Lock()
			e.leading = false
			e.mu.Unlock()
			// Mark the term lost before cancelling, so that the function's
			// return is never mistaken for a voluntary end.
			close(lost)
			cancelLeader()
		})
	}
	deadline := e.afterFunc(e.c.RenewDeadline-e.clock.Since(goodStart), stepDown)
	defer func() { deadline.Stop() }()

	renewTimer := e.clock.NewTimer(max(e.c.RetryPeriod-e.clock.Since(goodStart), time.Nanosecond))
	defer renewTimer.Stop()
	var termTimer clock.Timer
	var termC <-chan time.Time
	if e.c.TermLimit > 0 {
		termTimer = e.newTimer(e.c.TermLimit - e.clock.Since(acquiredAt))
		defer termTimer.Stop()
		termC = termTimer.C()
	}
	var stopTimer clock.Timer
	var stopTimeoutC <-chan time.Time
	defer func() {
		if stopTimer != nil {
			stopTimer.Stop()
		}
	}()
	ctxDone := ctx.Done()
	cause := causeNone

	beginStop := func(c stopCause) {
		if cause != causeNone {
			return
		}
		cause = c
		cancelLeader()
		stopTimer = e.clock.NewTimer(e.c.StopTimeout)
		stopTimeoutC = stopTimer.C()
		log.Info("Stopping the leader's function", "cause", c.String())
	}
	isLost := func() bool {
		select {
		case <-lost:
			return true
		default:
			return false
		}
	}
	lostErr := func() error {
		log.Info("Could not renew within RenewDeadline; stepped down", "renewDeadline", e.c.RenewDeadline)
		e.finishTerm(log, fnDone)
		return fmt.Errorf("%s: %w", e.desc, ErrLeaseLost)
	}

	rec := lock.Record{
		HolderIdentity:       e.identity,
		LeaseDurationSeconds: e.leaseSec,
		AcquireTime:          metav1.NewTime(acquiredAt),
		LeaderTransitions:    int(term),
	}

	for {
		e.parked(true)
		select {
		case <-lost:
			e.parked(false)
			return false, lostErr()
		case <-ctxDone:
			e.parked(false)
			ctxDone = nil
			beginStop(causeCancelled)
		case <-termC:
			e.parked(false)
			beginStop(causeTermLimit)
		case <-fnDone:
			e.parked(false)
			if isLost() {
				return false, lostErr()
			}
			if cause == causeNone {
				cause = causeFuncReturn
				log.Info("The leader's function returned")
			}
			stepDown()
			// Stopped before released: nobody else starts while
			// OnStoppedLeading still runs.
			e.reportStopped()
			if cause == causeTermLimit || e.c.ReleaseOnCancel {
				e.release(ctx, log, rec)
			}
			if cause == causeTermLimit {
				holdOff := e.clock.Now().Add(time.Duration(2.5 * float64(e.c.RetryPeriod)))
				e.mu.Lock()
				e.holdOff = holdOff
				e.mu.Unlock()
				return true, nil
			}
			return false, nil
		case <-stopTimeoutC:
			e.parked(false)
			stepDown()
			log.Error(ErrStopTimeout, "Leaving the lock to expire", "stopTimeout", e.c.StopTimeout)
			e.reportStopped()
			return false, fmt.Errorf("%s: %w (after %v)", e.desc, ErrStopTimeout, e.c.StopTimeout)
		case <-renewTimer.C():
			e.parked(false)
			start := e.clock.Now()
			rec.RenewTime = metav1.NewTime(start)
			err := e.renew(ctx, log, rec, goodStart)
			switch {
			case isLost():
				// The step-down already happened; a late success does
				// not undo it.
			case err == nil:
				goodStart = start
				deadline.Stop()
				deadline = e.afterFunc(e.c.RenewDeadline-e.clock.Since(goodStart), stepDown)
				renewTimer.Reset(max(e.c.RetryPeriod-e.clock.Since(start), time.Nanosecond))
			case lock.IsConflict(err):
				log.Info("Another candidate holds the lock", "err", err)
				stepDown()
			default:
				renewTimer.Reset(e.c.RetryPeriod)
			}
		}
	}
}

func (c stopCause) String() string {
	switch c {
	case causeCancelled:
		return "context cancelled"
	case causeTermLimit:
		return "term limit"
	case causeFuncReturn:
		return "function returned"
	}
	return "none"
}

// renew writes rec from the version this elector last wrote. On a conflict
// it reads the record: if it is still this term's (an earlier write landed
// after its caller gave up on it), it renews from the fresh version.
func (e *Elector) renew(ctx context.Context, log logr.Logger, rec lock.Record, goodStart time.Time) error {
	actx, cancel := e.attemptCtx(ctx, e.c.RenewDeadline-e.clock.Since(goodStart))
	defer cancel()
	start := e.clock.Now()
	err := e.c.Lock.Update(actx, rec)
	if lock.IsConflict(err) {
		cur, raw, gerr := e.c.Lock.Get(actx)
		switch {
		case gerr != nil:
			err = gerr
		case cur.HolderIdentity == e.identity && int64(cur.LeaderTransitions) == int64(rec.LeaderTransitions):
			err = e.c.Lock.Update(actx, rec)
		default:
			e.observe(*cur, raw)
		}
	}
	took := e.clock.Since(start)
	if e.c.Metrics != nil {
		e.c.Metrics.ObserveRenew(e.c.Name, took, err)
	}
	if err != nil {
		log.V(2).Info("Renewal failed", "err", err, "took", took)
		return err
	}
	e.observe(rec, nil)
	now := e.clock.Now()
	e.mu.Lock()
	e.lastRenew = now
	e.mu.Unlock()
	return nil
}

// finishTerm waits (bounded) for the leader's function after a step-down,
// then reports it.
func (e *Elector) finishTerm(log logr.Logger, fnDone <-chan struct{}) {
	t := e.clock.NewTimer(e.c.StopTimeout)
	defer t.Stop()
	select {
	case <-fnDone:
	case <-t.C():
		log.Error(ErrStopTimeout, "The leader's function is still running after losing the lock", "stopTimeout", e.c.StopTimeout)
	}
	e.reportStopped()
}

// reportStopped records the end of a term on the lock and calls
// OnStoppedLeading.
func (e *Elector) reportStopped() {
	e.c.Lock.RecordEvent("stopped leading")
	if e.c.Callbacks.OnStoppedLeading != nil {
		e.c.Callbacks.OnStoppedLeading()
	}
}

// release writes an empty holder, keeping the term, so that followers take
// over at once. It is only called once the leader's function has returned.
func (e *Elector) release(ctx context.Context, log logr.Logger, held lock.Record) {
	actx, cancel := e.attemptCtx(ctx, e.c.RenewDeadline)
	defer cancel()
	now := metav1.NewTime(e.clock.Now())
	rec := lock.Record{LeaseDurationSeconds: 1, AcquireTime: now, RenewTime: now, LeaderTransitions: held.LeaderTransitions}
	err := e.c.Lock.Update(actx, rec)
	if lock.IsConflict(err) {
		var cur *lock.Record
		if cur, _, err = e.c.Lock.Get(actx); err == nil {
			if cur.HolderIdentity != e.identity || cur.LeaderTransitions != held.LeaderTransitions {
				log.Info("Not releasing: the lock has moved on", "holder", cur.HolderIdentity)
				return
			}
			err = e.c.Lock.Update(actx, rec)
		}
	}
	if err != nil {
		log.Error(err, "Releasing the lock failed; followers take over when it expires")
		return
	}
	e.observe(rec, nil)
	log.Info("Released the lock")
}
