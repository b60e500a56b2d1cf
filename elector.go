package leaderelection

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/lock"
)

// Errors Run returns.
var (
	// ErrLeaseLost: this process led, and stopped because it could not
	// renew within RenewDeadline, another candidate holds the lock, or the
	// record was deleted.
	ErrLeaseLost = errors.New("leaderelection: lease lost")
	// ErrStopTimeout: the leader's function, or OnStoppedLeading, did not
	// return within StopTimeout after the term ended. The lock was not
	// released. After a lost lease the error matches ErrLeaseLost too.
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

	mu        sync.Mutex
	seen      observation // what this candidate has seen of the lock
	announced string      // the holder last passed to OnNewLeader
	leading   bool
	// recovering: a term's lease lapsed and Recover keeps its function
	// running while it renews again (see recover.go).
	recovering bool
	term       int64
	lastRenew  time.Time
	stopBy     time.Time // Run's context ended: callbacks may hold Run up until then

	// vitals is the elector's own health, for the watchdog, /readyz and
	// /status; it has its own lock.
	vitals vitals

	// claim is the claim this candidate wrote (nil: none); only the Run
	// goroutine uses it.
	claim *claim

	// changes is the lock's watch (nil: none, or it ended); only the Run
	// goroutine uses it.
	changes <-chan struct{}
	// corruptLogged and sharedLogged are when the campaign last logged a
	// corrupt record and a shared identity at full level: repeated
	// reports come at most once per repeatEvery. Run goroutine only.
	corruptLogged, sharedLogged time.Time

	leaders chan string // to the OnNewLeader goroutine
	ran     bool

	// park, if set (by tests), is called with true just before the elector
	// blocks waiting for a timer or signal, and with false when it wakes;
	// watch is a channel a signal on which also ends the wait (the lock's
	// watch, or a leader's pause under Recover, which its timer sends),
	// timers the wait's timers, closed the channels it ends on that are
	// only ever closed; any of them may be due already. closing, if set, closes such a channel for
	// another goroutine (a callback's) by calling close (closeWaking).
	park    func(parked bool, watch <-chan struct{}, timers []<-chan time.Time, closed ...<-chan struct{})
	closing func(ch <-chan struct{}, close func())
	// boot returns the time since boot including suspended time, if the
	// platform has such a clock (bootTime); tests replace it.
	boot func() (time.Duration, bool)
}

func (e *Elector) parked(p bool) {
	if e.park != nil {
		e.park(p, nil, nil)
	}
}

// parkedOn is parked(true) for a wait that also ends on a signal on watch,
// on one of timers, or on one of closed being closed, any of which may be
// due already.
func (e *Elector) parkedOn(watch <-chan struct{}, timers []<-chan time.Time, closed ...<-chan struct{}) {
	if e.park != nil {
		e.park(true, watch, timers, closed...)
	}
}

// closeWaking closes ch, which ends a wait of the Run goroutine, from
// another goroutine (see closing).
func (e *Elector) closeWaking(ch chan struct{}) {
	if e.closing != nil {
		e.closing(ch, func() { close(ch) })
		return
	}
	close(ch)
}

// NewElector validates c and returns an elector.
func NewElector(c Config) (*Elector, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return newElector(c.withDefaults()), nil
}

// newElector returns the elector of c, valid and its defaults applied.
func newElector(c Config) *Elector {
	e := &Elector{
		c:        c,
		clock:    c.Clock,
		identity: c.Lock.Identity(),
		desc:     c.Lock.Describe(),
		leaseSec: int(math.Ceil(c.LeaseDuration.Seconds())),
		boot:     bootTime,
	}
	e.vitals = vitals{
		now:           func() time.Time { return e.clock.Now() }, // tests replace e.clock
		renewDeadline: c.RenewDeadline,
		stopTimeout:   c.StopTimeout,
		calls:         map[string]pendingCall{},
	}
	return e
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
	return e.seen.rec.HolderIdentity
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
	s := e.vitals.status()
	e.mu.Lock()
	defer e.mu.Unlock()
	s.Name, s.Identity, s.Lock = e.c.Name, e.identity, e.desc
	s.Leading, s.Recovering, s.Term, s.LastRenew = e.leading, e.recovering, e.term, e.lastRenew
	s.Leader, s.Transitions = e.seen.rec.HolderIdentity, int64(e.seen.rec.LeaderTransitions)
	s.LeaseDuration = e.c.LeaseDuration
	if !e.seen.at.IsZero() && e.seen.rec.HolderIdentity != "" {
		s.Expiry = e.seen.at.Add(e.recordLease(e.seen.rec))
		if !lock.IsClaim(e.seen.rec) {
			s.LeaderTerm = int64(e.seen.rec.LeaderTransitions)
		}
	}
	return s
}

// Run campaigns until ctx ends, leading whenever it holds the lock. It
// returns nil after ctx ends or the leader's function returns by itself,
// ErrLeaseLost (wrapped) after losing the lock (unless Config.Recampaign,
// which campaigns again), and ErrStopTimeout (wrapped) if the leader's
// function or OnStoppedLeading outlived StopTimeout; both after a lost
// lease whose function ignored its cancelled context. Callbacks hold up
// Run's return by at most StopTimeout after ctx ends (plus the release, one
// bounded store call; after a lost lease, a last look at the lock instead,
// see docs/elector.md, "A deleted record"). Run may be called once.
func (e *Elector) Run(ctx context.Context) error {
	e.mu.Lock()
	if e.ran {
		e.mu.Unlock()
		return errors.New("leaderelection: Elector.Run called twice")
	}
	e.ran = true
	e.mu.Unlock()
	defer e.vitals.loopEnded()

	log := klog.FromContext(ctx)
	if e.c.Logger != nil {
		log = *e.c.Logger
	}
	log = log.WithValues("lock", e.desc, "identity", e.identity)

	if e.c.Callbacks.OnNewLeader != nil {
		e.leaders = make(chan string, 1)
		done := make(chan struct{})
		go e.deliverLeaders(done)
		defer func() { close(e.leaders); e.awaitLeaders(log, done) }()
	}
	stopAfter := context.AfterFunc(ctx, func() {
		stopBy := e.clock.Now().Add(e.c.StopTimeout)
		e.mu.Lock()
		e.stopBy = stopBy
		e.mu.Unlock()
	})
	defer stopAfter()

	if w, ok := e.c.Lock.(lock.Watcher); ok {
		watchCtx, stop := context.WithCancel(ctx)
		defer stop()
		e.changes = w.Changes(watchCtx)
	}

	for {
		t := e.campaign(ctx, log)
		if t == nil {
			return nil
		}
		again, err := t.run(ctx)
		if err != nil || !again {
			return err
		}
	}
}

// deliverLeaders calls OnNewLeader from one goroutine, with the newest
// holder, so that a slow callback never holds up the elector.
func (e *Elector) deliverLeaders(done chan struct{}) {
	defer e.closeWaking(done)
	for id := range e.leaders {
		end := e.vitals.callbackStarted("OnNewLeader", e.clock.Now().Add(e.c.StopTimeout))
		e.c.Callbacks.OnNewLeader(id)
		end()
	}
}

// awaitLeaders waits for OnNewLeader's last call, but not past StopTimeout
// after Run's context ended (or after now, if Run ends otherwise): a stuck
// callback must not keep Run from returning. It stays on the watchdog.
func (e *Elector) awaitLeaders(log logr.Logger, done <-chan struct{}) {
	now := e.clock.Now()
	e.mu.Lock()
	stopBy := e.stopBy
	e.mu.Unlock()
	if stopBy.IsZero() {
		stopBy = now.Add(e.c.StopTimeout)
	}
	t := e.newTimer(stopBy.Sub(now))
	defer t.Stop()
	e.vitals.beat(stopBy.Sub(now))
	e.parkedOn(nil, []<-chan time.Time{t.C()}, done)
	defer e.parked(false)
	select {
	case <-done:
	case <-t.C():
		log.Error(ErrStopTimeout, "OnNewLeader has not returned; Run returns without it", "stopTimeout", e.c.StopTimeout)
	}
}
