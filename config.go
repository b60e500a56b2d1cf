package leaderelection

import (
	"context"
	"errors"
	"fmt"
	"time"

	"k8s.io/klog/v2"
	"k8s.io/utils/clock"

	writegate "github.com/b3df926d/leaderelection/gate"
	"github.com/b3df926d/leaderelection/healthz"
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
	// Metrics observes every renewal attempt (default:
	// healthz.NewRenewMetrics(), which NewHealthServer serves; Run gives
	// its health server's).
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

// Validate checks c with client-go's rules, this module's own and those of
// the lock's store (lock.DurationRules; a Lease's for client-go's
// LeaseLock), and reports every problem, each naming its field.
func (c *Config) Validate() error {
	var errs []error
	if c.Callbacks.OnStartedLeading == nil {
		errs = append(errs, errors.New("Callbacks.OnStartedLeading must not be nil"))
	}
	var store lock.DurationRules
	if c.Lock == nil {
		errs = append(errs, errors.New("Config.Lock must not be nil"))
	} else if c.Lock.Identity() == "" {
		errs = append(errs, errors.New("Config.Lock identity must not be empty"))
	} else {
		store = durationRules(c.Lock)
	}
	return errors.Join(append(errs, c.check(configNames, store)...)...)
}

// withDefaults fills in c's zero fields that have defaults. NewElector
// and Run call it once, on a valid Config.
func (c Config) withDefaults() Config {
	if c.Clock == nil {
		c.Clock = clock.RealClock{}
	}
	if c.StopTimeout == 0 {
		c.StopTimeout = c.LeaseDuration
	}
	if c.Name == "" && c.Lock != nil {
		c.Name = c.Lock.Describe()
	}
	if c.Recover && c.RecoverDeadline == 0 {
		c.RecoverDeadline = DefaultRecoverDeadlineLeases * c.LeaseDuration
	}
	if c.Metrics == nil {
		c.Metrics = healthz.NewRenewMetrics()
	}
	return c
}

// check applies rules to c, naming the fields as n does, and then, if the
// three durations pass them, the store's own rules (nil: none).
func (c *Config) check(n names, store lock.DurationRules) []error {
	var errs []error
	durationsOK := true
	for _, r := range rules {
		if r.bad(c) {
			errs = append(errs, errors.New(r.msg(c, n)))
			durationsOK = durationsOK && !r.duration
		}
	}
	if durationsOK && store != nil {
		if err := store.ValidateDurations(c.LeaseDuration, c.RenewDeadline, c.RetryPeriod); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// names says how an error names a field: Config's errors by the field and
// its value ("RenewDeadline (10s)"); Option's add the flag AddFlags binds
// to it ("RenewDeadline (10s, --leader-elect-renew-deadline)").
type names struct {
	owner    string            // "Config" or "Option"
	flags    map[string]string // a field's flag, without the dashes
	zeroNote string            // what a zero duration means, if not an error
}

var configNames = names{owner: "Config"}

// flag is ", --<flag>" for a field that has one, else "".
func (n names) flag(field string) string {
	if f, ok := n.flags[field]; ok {
		return ", --" + f
	}
	return ""
}

// val names a field with its value: "RenewDeadline (10s[, --flag])".
func (n names) val(field string, v any) string {
	return fmt.Sprintf("%s (%v%s)", field, v, n.flag(field))
}

// bare names a field without its value: "Recover[ (--flag)]".
func (n names) bare(field string) string {
	if f := n.flag(field); f != "" {
		return fmt.Sprintf("%s (%s)", field, f[2:])
	}
	return field
}

// rule is one of Config's rules on its fields: the field it is about (its
// error names it first), the check, and the message, whose field names
// come from names. Config.Validate and Option.Validate both apply rules.
type rule struct {
	field string
	// duration: the rule is on LeaseDuration, RenewDeadline and
	// RetryPeriod alone; the lock's own rules apply only if none of these
	// fails.
	duration bool
	bad      func(c *Config) bool
	msg      func(c *Config, n names) string
}

// positive reports whether the three durations are positive, for the
// rules that compare them (a negative one has its own error).
func (c *Config) positive() bool {
	return c.LeaseDuration > 0 && c.RenewDeadline > 0 && c.RetryPeriod > 0
}

func mustBePositive(field string, v func(*Config) time.Duration) rule {
	return rule{field: field, duration: true,
		bad: func(c *Config) bool { return v(c) <= 0 },
		msg: func(c *Config, n names) string {
			return fmt.Sprintf("%s must be positive%s", n.val(field, v(c)), n.zeroNote)
		}}
}

// rules are Config's rules: client-go's on the three durations, plus that
// LeaseDuration and RetryPeriod are at least 1s (the record stores whole
// seconds), and the rules on StopTimeout, TermLimit, Recover and
// RecoverDeadline.
var rules = []rule{
	mustBePositive("LeaseDuration", func(c *Config) time.Duration { return c.LeaseDuration }),
	mustBePositive("RenewDeadline", func(c *Config) time.Duration { return c.RenewDeadline }),
	mustBePositive("RetryPeriod", func(c *Config) time.Duration { return c.RetryPeriod }),
	{field: "LeaseDuration", duration: true,
		bad: func(c *Config) bool { return c.positive() && c.LeaseDuration <= c.RenewDeadline },
		msg: func(c *Config, n names) string {
			return fmt.Sprintf("%s must be greater than %s: lower the renew deadline below %v (and the retry period below it ÷ %v), or raise the lease duration above %v",
				n.val("LeaseDuration", c.LeaseDuration), n.val("RenewDeadline", c.RenewDeadline), c.LeaseDuration, JitterFactor, c.RenewDeadline)
		}},
	{field: "RenewDeadline", duration: true,
		bad: func(c *Config) bool {
			return c.positive() && c.LeaseDuration > c.RenewDeadline && float64(c.RenewDeadline) <= JitterFactor*float64(c.RetryPeriod)
		},
		msg: func(c *Config, n names) string {
			jittered := time.Duration(JitterFactor * float64(c.RetryPeriod))
			flag := n.flag("RetryPeriod")
			if flag != "" {
				flag += fmt.Sprintf(" ×%v", JitterFactor)
			}
			return fmt.Sprintf("%s must be greater than RetryPeriod×%v (%v%s): lower the retry period below %v, or raise the renew deadline above %v (keeping it below the lease duration %v)",
				n.val("RenewDeadline", c.RenewDeadline), JitterFactor, jittered, flag,
				time.Duration(float64(c.RenewDeadline)/JitterFactor).Round(time.Millisecond), jittered, c.LeaseDuration)
		}},
	{field: "LeaseDuration", duration: true,
		bad: func(c *Config) bool { return c.LeaseDuration > 0 && c.LeaseDuration < time.Second },
		msg: func(c *Config, n names) string {
			return fmt.Sprintf("%s must be at least 1s: the record stores whole seconds", n.val("LeaseDuration", c.LeaseDuration))
		}},
	{field: "RetryPeriod", duration: true,
		bad: func(c *Config) bool { return c.RetryPeriod > 0 && c.RetryPeriod < time.Second },
		msg: func(c *Config, n names) string {
			return fmt.Sprintf("%s must be at least 1s (client-go allows less): the record stores renew times in whole seconds, so faster renewals can leave it unchanged and followers would measure the lease from an older renewal; raise it to 1s or more",
				n.val("RetryPeriod", c.RetryPeriod))
		}},
	{field: "StopTimeout",
		bad: func(c *Config) bool { return c.StopTimeout < 0 },
		msg: func(c *Config, n names) string {
			return fmt.Sprintf("%s must not be negative (0 means the lease duration)", n.val("StopTimeout", c.StopTimeout))
		}},
	{field: "TermLimit",
		bad: func(c *Config) bool { return c.TermLimit < 0 },
		msg: func(c *Config, n names) string {
			return fmt.Sprintf("%s must not be negative (0 means no limit)", n.val("TermLimit", c.TermLimit))
		}},
	{field: "TermLimit",
		bad: func(c *Config) bool { return c.TermLimit > 0 && c.TermLimit < c.RetryPeriod },
		msg: func(c *Config, n names) string {
			return fmt.Sprintf("%s must be at least %s", n.val("TermLimit", c.TermLimit), n.val("RetryPeriod", c.RetryPeriod))
		}},
	{field: "RecoverDeadline",
		bad: func(c *Config) bool { return c.RecoverDeadline < 0 },
		msg: func(c *Config, n names) string {
			return fmt.Sprintf("%s must not be negative (0 means %d × the lease duration)", n.val("RecoverDeadline", c.RecoverDeadline), DefaultRecoverDeadlineLeases)
		}},
	{field: "RecoverDeadline",
		bad: func(c *Config) bool { return !c.Recover && c.RecoverDeadline > 0 },
		msg: func(c *Config, n names) string {
			return fmt.Sprintf("%s is set but %s is not: set both, or leave RecoverDeadline 0", n.val("RecoverDeadline", c.RecoverDeadline), n.bare("Recover"))
		}},
	{field: "RecoverDeadline",
		bad: func(c *Config) bool {
			return c.Recover && c.RecoverDeadline > 0 && c.RecoverDeadline <= c.RenewDeadline
		},
		msg: func(c *Config, n names) string {
			return fmt.Sprintf("%s must be greater than %s: recovery begins when the renew deadline passes and ends at the recover deadline, both counted from the last good renewal's start; raise it, or leave it 0 for %d × the lease duration",
				n.val("RecoverDeadline", c.RecoverDeadline), n.val("RenewDeadline", c.RenewDeadline), DefaultRecoverDeadlineLeases)
		}},
	{field: "Recover",
		bad: func(c *Config) bool { return c.Recover && c.Gate == nil },
		msg: func(c *Config, n names) string {
			return fmt.Sprintf("%s.%s needs %s.Gate: while recovering, the leader's function runs without leading, and only the gate keeps its writes out; build the leader's clients from a gate.New() and set Gate",
				n.owner, n.bare("Recover"), n.owner)
		}},
}
