// Package shard runs many leaderships in one process: M shards spread over
// the live replicas, balanced, each run by at most one replica at a time
// with its own fencing term, at a store cost that does not grow with M.
//
//	err := shard.Run(ctx, shard.Options{Name: "reconciler", Locks: locks}, 12,
//		func(ctx context.Context, s int) {
//			term, _ := shard.TermFrom(ctx)
//			work(ctx, s, term) // until ctx is done
//		})
//
// Every replica calls Run with the same Name, shard count and store. The
// protocol (membership slots held as leases, an assignment record written
// only when membership changes, revoke before assign), its safety argument
// and its request count are in docs/shards.md; its pure core is
// internal/shard, which this package drives over real locks.
package shard

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	leaderelection "github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/healthz"
	core "github.com/b3df926d/leaderelection/internal/shard"
	"github.com/b3df926d/leaderelection/internal/standby"
	"github.com/b3df926d/leaderelection/lock"
)

// Errors Run returns.
var (
	// ErrShardCount: the assignment record was written by replicas with
	// another shard count. Run refuses to take part (it stops whatever it
	// ran and releases its slot first) rather than split shards two ways.
	ErrShardCount = core.ErrShardCount
	// ErrStopTimeout: after Run's context ended, a shard's function did
	// not return within Options.StopTimeout. The slot was not released;
	// the others take its shards once its lease has expired. Exit the
	// process: the function may still be working.
	ErrStopTimeout = errors.New("shard: a shard's function did not return in time")
	// ErrStandbyNotReady is the "standby" readiness check's error (on
	// RunOrDie's /readyz) while Options.Standby has not called ready.
	ErrStandbyNotReady = errors.New("shard: Options.Standby has not reported ready (it calls ready once its caches are warm)")
)

// MaxSlots is the most replicas (Options.Slots) a shard set can have: the
// assignment record spends one character per shard on its owner.
const MaxSlots = 64

// Options configure Run. Name and Locks are required; every other field
// has a default.
type Options struct {
	// Name names the shard set. Its records are "<Name>-slot-<k>" for
	// k < Slots (membership) and "<Name>-shards" (the assignment).
	Name string
	// Locks returns a new handle on the record called name, in the
	// store every replica shares, with this replica's identity. Run asks
	// for several handles per record and uses each from one goroutine.
	// With fresh set, the handle's Get must read the store itself, never
	// a cache or a watch (backend/s3: Options.NoCache; backend/k8s: any
	// handle, since Run subscribes only the others to Changes): the
	// barrier before a shard starts counts only such reads.
	Locks func(name string, fresh bool) (lock.Interface, error)
	// Identity is this replica's identity in the slot it holds (default:
	// the Identity of the handles Locks returns). It ranks shards, so a
	// replica that comes back under its old identity prefers its old
	// shards; two live replicas may share one and are still two members.
	Identity string
	// Slots is the most replicas that can be members at once (default
	// 16, at most MaxSlots). Each costs a record that every replica
	// watches; replicas beyond it wait for a free slot.
	Slots int

	// LeaseDuration, RenewDeadline and RetryPeriod are the elector's
	// (leaderelection.Config), with its rules and defaults 15s, 10s, 2s:
	// a member renews its slot every RetryPeriod, cancels every shard it
	// runs RenewDeadline after its last good renewal began, and a slot
	// seen unchanged for LeaseDuration is taken from its holder.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// StopTimeout bounds how long Run waits for the shards' functions
	// to return once its context has ended (default LeaseDuration); the
	// slot is released only after all have.
	StopTimeout time.Duration
	// Logger receives structured logs (default: klog.FromContext of
	// Run's context).
	Logger *logr.Logger

	// Ownership, if set, is kept up to date with this replica's part in
	// the set and the assignment it last read, for the application and
	// the health server (it is a healthz.Source).
	Ownership *Ownership
	// Metrics, if set, observes each shard's move to this replica
	// (healthz.Metrics.ObserveMove, labelled Name); a health server
	// serving Ownership with these Metrics serves them.
	Metrics *healthz.Metrics
	// Standby, if set, is the work this replica does whatever shards it
	// owns (a warm standby: informers, caches, connections), as
	// leaderelection.Option.Standby is for one leadership: it starts with
	// Run and calls ready once warm; the replica takes a slot only after
	// that, and RunOrDie's /readyz "standby" check fails until then. Its
	// context ends only after every shard's function has returned and the
	// slot is released (a lost slot does not end it), and Run waits for
	// it to return, up to StopTimeout. Returning without calling ready
	// ends Run with an error.
	Standby func(ctx context.Context, ready func())
}

type termKey struct{}

// TermFrom returns the fencing term carried by a shard's context: the
// generation of the assignment under which this replica started the
// shard. It strictly increases per shard across owners (and across
// deletions of the records), so a downstream store can reject writes
// from an older term.
func TermFrom(ctx context.Context) (int64, bool) {
	t, ok := ctx.Value(termKey{}).(int64)
	return t, ok
}

// Run takes part in the shard set opt.Name of shards shards until ctx
// ends: it holds a membership slot, and runs fn(ctx, s) for exactly the
// shards s the assignment gives it, each with its own context, carrying
// the shard's term (TermFrom) and cancelled when the shard moves away or
// this replica loses its slot. fn must return promptly once its context
// is done; a shard whose fn returns earlier stays idle here until it
// moves. A replica that loses its slot (its renewals failed for
// RenewDeadline, or it was taken) waits for its functions and joins again.
//
// When ctx ends, Run cancels every shard, waits for the functions, and
// releases its slot so that the others take the shards at once; it
// returns nil. It returns an error for bad options (naming the field), a
// shard count other than the one the set was written with
// (ErrShardCount), an undecodable assignment record, or ErrStopTimeout.
func Run(ctx context.Context, opt Options, shards int, fn func(ctx context.Context, shard int)) error {
	opt, err := opt.withDefaults(ctx, shards, fn)
	if err != nil {
		return err
	}
	return run(ctx, opt, shards, fn, nil)
}

// run is Run with opt validated and defaulted. warm is opt.Standby
// started already (RunOrDie serves its readiness check), or nil to start
// it here.
func run(ctx context.Context, opt Options, shards int, fn func(ctx context.Context, shard int), warm *standby.Runner) (err error) {
	if warm == nil && opt.Standby != nil {
		warm = startStandby(ctx, opt)
	}
	if warm != nil {
		defer func() { err = errors.Join(err, warm.Stop(opt.StopTimeout)) }()
		opt.Logger.Info("Waiting for Standby to report ready before taking a slot")
		ready, werr := warm.AwaitReady(ctx)
		if werr != nil || !ready {
			return werr
		}
		opt.Logger.Info("Standby is ready")
	}
	g, err := newGlue(ctx, opt, shards, fn)
	if err != nil {
		return err
	}
	return g.run(ctx)
}

// withDefaults validates opt and fills in its defaults; every problem is
// reported, each naming its field.
func (o Options) withDefaults(ctx context.Context, shards int, fn func(context.Context, int)) (Options, error) {
	var errs []error
	if shards < 1 {
		errs = append(errs, fmt.Errorf("shard count (%d) must be at least 1", shards))
	}
	if fn == nil {
		errs = append(errs, errors.New("the shard function must not be nil"))
	}
	if o.Name == "" {
		errs = append(errs, errors.New("Options.Name must not be empty"))
	}
	if o.Locks == nil {
		errs = append(errs, errors.New("Options.Locks must not be nil"))
	}
	if o.Slots == 0 {
		o.Slots = 16
	}
	if o.Slots < 1 || o.Slots > MaxSlots {
		errs = append(errs, fmt.Errorf("Options.Slots (%d) must be between 1 and %d", o.Slots, MaxSlots))
	}
	if o.LeaseDuration == 0 && o.RenewDeadline == 0 && o.RetryPeriod == 0 {
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 15*time.Second, 10*time.Second, 2*time.Second
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = o.LeaseDuration
	}
	if o.StopTimeout < 0 {
		errs = append(errs, fmt.Errorf("Options.StopTimeout (%v) must not be negative", o.StopTimeout))
	}
	if o.Logger == nil {
		l := klog.FromContext(ctx)
		o.Logger = &l
	}
	if o.Ownership == nil {
		o.Ownership = new(Ownership)
	}
	if len(errs) > 0 {
		return o, fmt.Errorf("shard: %w", errors.Join(errs...))
	}
	// The elector's timing rules, and an identity, checked on the
	// assignment record's handle.
	l, err := o.Locks(assignmentName(o.Name), false)
	if err != nil {
		return o, fmt.Errorf("shard %s: Options.Locks(%q): %w", o.Name, assignmentName(o.Name), err)
	}
	if o.Identity == "" {
		o.Identity = l.Identity()
	}
	c := leaderelection.Config{Lock: idLock{l, o.Identity}, LeaseDuration: o.LeaseDuration, RenewDeadline: o.RenewDeadline, RetryPeriod: o.RetryPeriod,
		Callbacks: leaderelection.Callbacks{OnStartedLeading: func(context.Context) {}}}
	if err := c.Validate(); err != nil {
		return o, fmt.Errorf("shard %s: Options: %w", o.Name, err)
	}
	return o, nil
}

// idLock is a lock under the identity Options.Identity, for validation.
type idLock struct {
	lock.Interface
	id string
}

func (l idLock) Identity() string { return l.id }

// startStandby starts opt.Standby, with opt's logger.
func startStandby(ctx context.Context, opt Options) *standby.Runner {
	return standby.Start(ctx, *opt.Logger, standby.Errors{Field: "shard: Options.Standby", NotReady: ErrStandbyNotReady, StopTimeout: ErrStopTimeout}, opt.Standby)
}
