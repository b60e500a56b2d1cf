// Package leaderelection makes a controller or daemon highly available: run
// N copies, exactly one works at a time, and a crashed or wedged leader is
// replaced fast and safely.
//
// RunOrDie (or Run) validates the options, starts a health server whose
// watchdog fails a process whose elector is wedged, and runs the user's
// function only while this process holds the lock. The lock is any backend's
// (backend/file, backend/k8s, ...), or a Kubernetes Lease.
//
// Every acquisition increments the record's LeaderTransitions; that value is
// the term, a fencing token the leader's code can hand to downstream stores
// (TermFrom, Elector.Term).
package leaderelection

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/internal/standby"
	"github.com/b3df926d/leaderelection/lock"
)

// Run validates opt and runs the election until ctx ends (or opt.StopCh is
// closed): opt.Run runs whenever this process holds the lock. It returns nil
// after a graceful stop or when opt.Run returned by itself, an error wrapping
// ErrLeaseLost after losing the lock (unless opt.Recampaign), and a validation or health-server
// error (such as a port in use) before anything starts.
func Run(ctx context.Context, opt Option) (err error) {
	opt, c, err := opt.resolve()
	if err != nil {
		return fmt.Errorf("leaderelection: invalid options: %w", err)
	}
	log := klog.FromContext(ctx)
	if opt.Logger != nil {
		log = *opt.Logger
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if opt.StopCh != nil {
		go func() {
			select {
			case <-opt.StopCh:
				cancel()
			case <-ctx.Done():
			}
		}()
	}

	work, runErr := opt.work(cancel)
	c.Callbacks.OnStartedLeading = work
	if !opt.Disabled && c.Lock == nil {
		kl, err := newKubeLock(ctx, opt)
		if err != nil {
			return fmt.Errorf("leaderelection: %w", err)
		}
		defer kl.Close()
		c.Lock = kl
	}
	var metrics *healthz.Metrics
	if !opt.Disabled && opt.Port != NoHealthServer {
		metrics = healthz.NewRenewMetrics()
		c.Metrics = metrics
	}
	c = c.withDefaults()
	var warm *standby.Runner
	if opt.Standby != nil {
		warm = startStandby(ctx, log, opt.Standby)
		defer func() { err = errors.Join(err, warm.Stop(c.StopTimeout)) }()
	}
	disabled := &disabledSource{name: opt.Name, id: opt.ID}
	var src healthz.Source = disabled
	var elector *Elector
	var lockReady lock.ReadinessChecker
	if !opt.Disabled {
		lockReady = readinessOf(c.Lock)
		elector = newElector(c)
		src = elector
	}

	if opt.Port != NoHealthServer {
		var standbyReady func() error
		if warm != nil {
			standbyReady = warm.Check
		}
		srv, err := healthz.New(healthz.Options{
			Addr:            net.JoinHostPort(opt.HealthBindAddress, strconv.Itoa(opt.Port)),
			Source:          src,
			Liveness:        opt.LivenessChecker,
			Readiness:       opt.ReadinessChecker,
			LockReadiness:   lockReady,
			Standby:         standbyReady,
			LeaderOnlyReady: opt.LeaderOnlyReady,
			Handlers:        opt.Handlers,
			Metrics:         metrics,
		})
		if err != nil {
			return fmt.Errorf("leaderelection: %w", err)
		}
		log.Info("Health server listening", "addr", srv.Addr())
		serveErr := make(chan error, 1)
		srvCtx, stopSrv := context.WithCancel(context.WithoutCancel(ctx))
		defer func() {
			stopSrv()
			if err := <-serveErr; err != nil {
				log.Error(err, "Health server shutdown")
			}
		}()
		go func() { serveErr <- srv.Serve(srvCtx) }()
	}

	if opt.Leadership != nil {
		opt.Leadership.src.Store(&src)
	}
	if warm != nil {
		log.Info("Waiting for Standby to report ready before campaigning")
		ready, werr := warm.AwaitReady(ctx)
		if werr != nil || !ready {
			return werr
		}
		log.Info("Standby is ready")
	}
	if opt.Disabled {
		log.Info("Leader election disabled; running")
		disabled.running.Store(true)
		work(ctx)
		disabled.running.Store(false)
	} else {
		err = elector.Run(klog.NewContext(ctx, log))
	}
	if rerr := runErr(); rerr != nil {
		return fmt.Errorf("leaderelection: %w: %w", ErrRunFailed, rerr)
	}
	return err
}

// readinessOf returns l's own readiness check, if it has one.
func readinessOf(l lock.Interface) lock.ReadinessChecker {
	rc, _ := l.(lock.ReadinessChecker)
	return rc
}

// ErrRunFailed wraps the error Option.RunE returned.
var ErrRunFailed = errors.New("the leader's function failed")

// work returns the leader's function (Run, or RunE recording its error and
// calling stop), and how to read the recorded error.
func (o Option) work(stop context.CancelFunc) (func(context.Context), func() error) {
	if o.RunE == nil {
		return o.Run, func() error { return nil }
	}
	var mu sync.Mutex
	var first error
	return func(ctx context.Context) {
			err := o.RunE(ctx)
			if err == nil || errors.Is(err, context.Canceled) {
				return
			}
			mu.Lock()
			if first == nil {
				first = err
			}
			mu.Unlock()
			stop()
		}, func() error {
			mu.Lock()
			defer mu.Unlock()
			return first
		}
}

// NewHealthServer returns the health server for e, as Run builds it, with
// e's renewals feeding its metrics: the by-hand wiring of NewElector and
// healthz.New. opts.Source is set to e; opts.LockReadiness, if unset, to
// e's lock if it is a lock.ReadinessChecker; and opts.Metrics, if unset, to
// the metrics e was built with (Config.Metrics, if a *healthz.Metrics, as
// by default); other metrics than those are an error, as e would never
// feed them. Run both (see the example).
func NewHealthServer(e *Elector, opts healthz.Options) (*healthz.Server, error) {
	opts.Source = e
	if opts.LockReadiness == nil {
		opts.LockReadiness = readinessOf(e.c.Lock)
	}
	if opts.Metrics == nil {
		opts.Metrics, _ = e.c.Metrics.(*healthz.Metrics)
	} else if Metrics(opts.Metrics) != e.c.Metrics {
		// A server serving metrics the elector does not feed would show
		// renewals that never move.
		return nil, errors.New("leaderelection: NewHealthServer: healthz.Options.Metrics is not the elector's Config.Metrics (the elector feeds only those); set Config.Metrics, or leave Options.Metrics unset")
	}
	return healthz.New(opts)
}

// Leadership is this process's election state, for the application: set
// Option.Leadership to one, and read it from handlers and goroutines. The
// zero value is ready and reports not leading until Run starts.
type Leadership struct {
	src atomic.Pointer[healthz.Source]
}

// Status returns the elector's state (the zero Status before Run starts).
func (l *Leadership) Status() healthz.Status {
	if p := l.src.Load(); p != nil {
		return (*p).Status()
	}
	return healthz.Status{}
}

// IsLeader reports whether this process leads now (with Option.Disabled:
// while the function runs).
func (l *Leadership) IsLeader() bool { return l.Status().Leading }

// Leader returns the last observed leader's identity ("" if none).
func (l *Leadership) Leader() string { return l.Status().Leader }

// Term returns the current term (fencing token) while leading, else the
// last term this process held.
func (l *Leadership) Term() int64 { return l.Status().Term }

// RunOrDie is Run for a main function: it stops gracefully on SIGINT or
// SIGTERM, returns after a graceful stop (so main can exit 0), and exits
// the process with status 1 and the error on invalid options, a health
// server that cannot start, or a lost lease (so goroutines that ignored
// their context die too).
func RunOrDie(opt Option) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, opt); err != nil {
		// Once, through the configured logger (klog's by default, which
		// writes to stderr).
		log := klog.Background()
		if opt.Logger != nil {
			log = *opt.Logger
		}
		log.Error(err, "Exiting")
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}
}

// disabledSource is the health server's source without an election
// (--leader-elect=false): the process leads while its function runs.
type disabledSource struct {
	name, id string
	running  atomic.Bool
}

func (d *disabledSource) Status() healthz.Status {
	name := d.name
	if name == "" {
		name = "disabled"
	}
	st := healthz.Status{Name: name, Identity: d.id, Lock: "none (leader election disabled)"}
	if d.running.Load() {
		st.Leading, st.Leader = true, d.id
	}
	return st
}
