package leaderelection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	writegate "github.com/b3df926d/leaderelection/gate"
	"github.com/b3df926d/leaderelection/lock"
)

// JitterFactor spreads followers' polls over [RetryPeriod, (1+JitterFactor)×
// RetryPeriod], as client-go does; RenewDeadline must exceed JitterFactor ×
// RetryPeriod.
const JitterFactor = 1.2

// DefaultRecoverDeadlineLeases is RecoverDeadline, in lease durations,
// when it is zero: 60s at the default 15s lease.
const DefaultRecoverDeadlineLeases = 4

// Config configures an Elector. The three durations and their rules are
// client-go's, so a fleet can switch without re-tuning.
type Config struct {
	// Lock is the store's lock (any backend, or client-go's LeaseLock). Its
	// Identity is this candidate's identity.
	Lock lock.Interface

	// LeaseDuration is how long a follower waits, measured on its own clock
	// from the last time it saw the record change, before it takes over.
	// It bounds crash failover. The record stores it in whole seconds,
	// rounded up.
	LeaseDuration time.Duration
	// RenewDeadline is how long the leader keeps trying to renew, measured
	// from the start of its last successful renewal, before it steps down.
	// LeaseDuration − RenewDeadline is the safety margin that absorbs clock
	// rate differences and delivery delays between leader and followers.
	RenewDeadline time.Duration
	// RetryPeriod is how often the leader renews, and how often followers
	// whose lock cannot watch poll (with jitter). At least 1s: the record
	// holds renew times in whole seconds, and a follower can only see a
	// renewal that changed the record.
	RetryPeriod time.Duration

	// ReleaseOnCancel writes an empty holder when Run's context ends (after
	// the leader's function has returned), so that watching followers take
	// over at once instead of after LeaseDuration.
	ReleaseOnCancel bool
	// StopTimeout bounds how long the elector waits, after a term ends, for
	// OnStartedLeading and then OnStoppedLeading to return (one deadline for
	// both), and how long a callback may hold up Run's return after its
	// context ends. While it waits, a leader that is stopping on purpose
	// keeps renewing, so nobody else starts meanwhile. If a callback does
	// not return in time the lease is not released, Run returns
	// ErrStopTimeout, and the watchdog reports the callback. Default:
	// LeaseDuration.
	StopTimeout time.Duration
	// TermLimit, if set, makes the leader hand over after leading this
	// long: it stops its function, releases the lock, and stays a
	// candidate, leaving the free lock to the others until one of them has
	// taken it or one LeaseDuration has passed.
	TermLimit time.Duration

	// Recampaign, after a lost term whose function (and OnStoppedLeading)
	// returned within StopTimeout, makes the elector campaign again in the
	// same process instead of ending Run with ErrLeaseLost. A function that
	// did not return still ends Run (ErrLeaseLost and ErrStopTimeout), since
	// it may still be working. Off by default: exiting is the safe choice
	// for code that may ignore its context.
	Recampaign bool

	// Recover keeps the leader's function running through a store outage.
	// A leader whose renewals fail past RenewDeadline stops leading then,
	// as without it (IsLeader false, Gate closed, at the same instant, so
	// a takeover is just as safe), but its function's context is not
	// cancelled, and it keeps renewing this term's record. A renewal that
	// succeeds finds the record as this leader last wrote it, so nobody
	// took over and no other term began: it leads again in the same term,
	// the gate reopened. One that finds another holder, a higher term or
	// no record ends the term as a lost lease (the function's context is
	// cancelled; then Run returns ErrLeaseLost, or campaigns again with
	// Recampaign); so does RecoverDeadline passing. While recovering, the
	// function's context says nothing about leading: only the gate does,
	// so Recover requires Gate, and the function must write only through
	// it (or with the term, to a store that checks fencing tokens). On a
	// follower, Recover counts the lease from its first read that
	// succeeds after reads (or a takeover's write) that failed, once per
	// record, so a leader cut off by the same outage renews before it may
	// take over; a holder that died meanwhile is replaced a lease after
	// the store's return. See docs/elector.md, "Riding out a store
	// outage". Off by default.
	Recover bool
	// RecoverDeadline is how long after the start of the last good
	// renewal a recovering leader keeps trying before it gives up; more
	// than RenewDeadline. Zero means DefaultRecoverDeadlineLeases ×
	// LeaseDuration.
	RecoverDeadline time.Duration

	// Gate, if set, is the leader's write gate (package gate), which the
	// elector drives: it opens with the term when this process starts
	// leading, and closes at the step-down, before the leader's context is
	// cancelled and before any other candidate may take over; a graceful
	// end closes it when the function is told to stop. Build the leader's
	// clients from it (Gate.Config, Gate.Do) before Run. Nil: no gate.
	Gate *writegate.Gate

	// Callbacks are the user's hooks.
	Callbacks Callbacks

	// Name labels logs and metrics (default: the lock's Describe()).
	Name string
	// Logger receives structured logs (default: klog.FromContext of Run's
	// context).
	Logger *klog.Logger
	// Clock is for tests (default: the real clock).
	Clock clock.WithDelayedExecution
	// Metrics, if set, observes every renewal attempt.
	Metrics Metrics
}

// Callbacks are called by the elector. Unlike client-go's, they are
// supervised: OnStartedLeading is awaited before the elector releases or
// returns, and OnStoppedLeading is called only after OnStartedLeading.
type Callbacks struct {
	// OnStartedLeading runs the leader's work. Its context carries the term
	// (TermFrom) and is cancelled the moment this process stops leading;
	// the function must return promptly then.
	OnStartedLeading func(ctx context.Context)
	// OnStoppedLeading is called after OnStartedLeading has returned (or
	// StopTimeout passed), once per term that started the function. The
	// leader keeps renewing while it runs and releases only after it has
	// returned, so no other candidate starts meanwhile; it shares
	// StopTimeout with the function. Optional.
	OnStoppedLeading func()
	// OnNewLeader is called, from one goroutine and in order, when the
	// observed holder changes (with "" when the lock is released).
	// Optional; a slow callback never delays renewals, and holds up Run's
	// return by at most StopTimeout (a call running longer fails the
	// watchdog).
	OnNewLeader func(identity string)
}

// Metrics observes renewals; the healthz package provides a Prometheus
// implementation.
type Metrics interface {
	// ObserveRenew is called after every renewal attempt by the leader.
	ObserveRenew(name string, took time.Duration, err error)
}

// Validate checks c with client-go's rules and reports every problem, each
// naming its field.
func (c *Config) Validate() error {
	var errs []error
	if c.LeaseDuration <= c.RenewDeadline {
		errs = append(errs, fmt.Errorf("LeaseDuration (%v) must be greater than RenewDeadline (%v)", c.LeaseDuration, c.RenewDeadline))
	}
	if float64(c.RenewDeadline) <= JitterFactor*float64(c.RetryPeriod) {
		errs = append(errs, fmt.Errorf("RenewDeadline (%v) must be greater than RetryPeriod×%v (%v)", c.RenewDeadline, JitterFactor, time.Duration(JitterFactor*float64(c.RetryPeriod))))
	}
	if c.LeaseDuration < time.Second {
		errs = append(errs, fmt.Errorf("LeaseDuration (%v) must be at least 1s: the record stores whole seconds", c.LeaseDuration))
	}
	if c.RenewDeadline <= 0 {
		errs = append(errs, fmt.Errorf("RenewDeadline (%v) must be greater than zero", c.RenewDeadline))
	}
	if c.RetryPeriod <= 0 {
		errs = append(errs, fmt.Errorf("RetryPeriod (%v) must be greater than zero", c.RetryPeriod))
	} else if c.RetryPeriod < time.Second {
		errs = append(errs, fmt.Errorf("RetryPeriod (%v) must be at least 1s: the record stores renew times in whole seconds, so faster renewals can leave it unchanged and followers would measure the lease from an older renewal", c.RetryPeriod))
	}
	if c.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("StopTimeout (%v) must not be negative", c.StopTimeout))
	}
	if c.TermLimit < 0 {
		errs = append(errs, fmt.Errorf("TermLimit (%v) must not be negative", c.TermLimit))
	}
	if c.TermLimit > 0 && c.TermLimit < c.RetryPeriod {
		errs = append(errs, fmt.Errorf("TermLimit (%v) must be at least RetryPeriod (%v)", c.TermLimit, c.RetryPeriod))
	}
	if c.RecoverDeadline < 0 {
		errs = append(errs, fmt.Errorf("RecoverDeadline (%v) must not be negative (0 means %d × LeaseDuration)", c.RecoverDeadline, DefaultRecoverDeadlineLeases))
	}
	if c.Recover {
		if c.RecoverDeadline > 0 && c.RecoverDeadline <= c.RenewDeadline {
			errs = append(errs, fmt.Errorf("RecoverDeadline (%v) must be greater than RenewDeadline (%v): recovery begins when RenewDeadline passes and ends at RecoverDeadline, both counted from the last good renewal's start", c.RecoverDeadline, c.RenewDeadline))
		}
		if c.Gate == nil {
			errs = append(errs, errors.New("Config.Recover needs Config.Gate: while recovering, the leader's function runs without leading, and only the gate keeps its writes out"))
		}
	} else if c.RecoverDeadline != 0 {
		errs = append(errs, fmt.Errorf("RecoverDeadline (%v) is set but Recover is not: set Recover too, or leave RecoverDeadline 0", c.RecoverDeadline))
	}
	if c.Callbacks.OnStartedLeading == nil {
		errs = append(errs, errors.New("Callbacks.OnStartedLeading must not be nil"))
	}
	if c.Lock == nil {
		errs = append(errs, errors.New("Config.Lock must not be nil"))
	} else if c.Lock.Identity() == "" {
		errs = append(errs, errors.New("Config.Lock identity must not be empty"))
	}
	return errors.Join(errs...)
}
