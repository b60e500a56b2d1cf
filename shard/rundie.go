package shard

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/internal/standby"
	"github.com/b3df926d/leaderelection/lock"
)

// RunOrDie is Run for a main function, as leaderelection.RunOrDie is for
// one leadership: it stops gracefully on SIGINT or SIGTERM and returns
// (so main can exit 0), serves the health server health describes while
// Run runs (Addr "" serves none; its Source is opt.Ownership and its
// Metrics opt.Metrics, both made if nil; its /readyz has the store's own
// check if the backend has one, and "standby" with opt.Standby, which
// starts before the server), and exits the process with
// status 1 and the error on invalid options, a health server that cannot
// start, or an error from Run (so goroutines that ignored their context
// die too).
func RunOrDie(health healthz.Options, opt Options, shards int, fn func(ctx context.Context, shard int)) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := runServed(ctx, health, opt, shards, fn); err != nil {
		log := klog.Background()
		if opt.Logger != nil {
			log = *opt.Logger
		}
		log.Error(err, "Exiting")
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}
}

// runServed is RunOrDie up to exiting: Run, with the health server
// serving its Ownership.
func runServed(ctx context.Context, health healthz.Options, opt Options, shards int, fn func(context.Context, int)) error {
	opt, err := opt.withDefaults(ctx, shards, fn)
	if err != nil {
		return err
	}
	var warm *standby.Runner
	if opt.Standby != nil {
		warm = startStandby(ctx, opt)
	}
	if health.Addr != "" {
		if warm != nil {
			health.Standby = warm.Check
		}
		if health.LockReadiness == nil {
			// The store's own readiness (a gossip voter recovering, say),
			// as leaderelection.Run serves it.
			health.LockReadiness, err = lockReadiness(opt)
			if err != nil {
				if warm != nil {
					err = errors.Join(err, warm.Stop(opt.StopTimeout))
				}
				return err
			}
		}
		if opt.Metrics == nil {
			opt.Metrics = healthz.NewRenewMetrics()
		}
		// Named before the server labels its metrics with the name.
		opt.Ownership.set(healthz.Status{Name: opt.Name, Identity: opt.Identity, LeaseDuration: opt.LeaseDuration,
			Shards: &healthz.Shards{Count: shards, Slot: -1, Owned: []healthz.OwnedShard{}, Members: []healthz.ShardMember{}}})
		health.Source, health.Metrics = opt.Ownership, opt.Metrics
		srv, err := healthz.New(health)
		if err != nil {
			return err
		}
		opt.Logger.Info("Health server listening", "addr", srv.Addr())
		srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
		served := make(chan error, 1)
		go func() { served <- srv.Serve(srvCtx) }()
		defer func() {
			stopSrv()
			if err := <-served; err != nil {
				opt.Logger.Error(err, "Health server shutdown")
			}
		}()
	}
	return run(ctx, opt, shards, fn, warm)
}

// lockReadiness returns the store's readiness check
// (lock.ReadinessChecker) of a handle on the assignment record, if its
// backend has one.
func lockReadiness(opt Options) (lock.ReadinessChecker, error) {
	l, err := opt.Locks(assignmentName(opt.Name), false)
	if err != nil {
		return nil, fmt.Errorf("shard %s: Options.Locks(%q): %w", opt.Name, assignmentName(opt.Name), err)
	}
	rc, _ := l.(lock.ReadinessChecker)
	return rc, nil
}

// Validate reports what Run would refuse in o for a set of shards
// shards, every problem naming its field, without taking part (it asks
// Locks for one handle, to check the durations against the store's
// rules). A main function calls it to tell bad input from a failure.
func (o Options) Validate(shards int) error {
	_, err := o.withDefaults(context.Background(), shards, func(context.Context, int) {})
	return err
}
