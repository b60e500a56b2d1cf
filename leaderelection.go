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
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection/healthz"
)

// Run validates opt and runs the election until ctx ends (or opt.StopCh is
// closed): opt.Run runs whenever this process holds the lock. It returns nil
// after a graceful stop or when opt.Run returned by itself, an error wrapping
// ErrLeaseLost after losing the lock (unless opt.Recampaign), and a validation or health-server
// error (such as a port in use) before anything starts.
func Run(ctx context.Context, opt Option) error {
	if err := opt.Validate(); err != nil {
		return fmt.Errorf("leaderelection: invalid options: %w", err)
	}
	opt = opt.withDefaults()
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

	var src healthz.Source = disabledSource{}
	var elector *Elector
	if !opt.Disabled {
		l := opt.Lock
		if l == nil {
			kl, err := newKubeLock(ctx, opt)
			if err != nil {
				return fmt.Errorf("leaderelection: %w", err)
			}
			defer kl.Close()
			l = kl
		}
		var err error
		if elector, err = NewElector(opt.electorConfig(l)); err != nil {
			return fmt.Errorf("leaderelection: %w", err)
		}
		src = elector
	}

	if opt.Port != NoHealthServer {
		srv, err := healthz.New(healthz.Options{
			Addr:     net.JoinHostPort(opt.HealthBindAddress, strconv.Itoa(opt.Port)),
			Source:   src,
			Liveness: opt.LivenessChecker,
		})
		if err != nil {
			return fmt.Errorf("leaderelection: %w", err)
		}
		if elector != nil {
			elector.c.Metrics = srv.Metrics()
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

	if opt.Disabled {
		log.Info("Leader election disabled; running")
		opt.Run(ctx)
		return nil
	}
	return elector.Run(klog.NewContext(ctx, log))
}

// RunOrDie is Run for a main function: it stops gracefully on SIGINT or
// SIGTERM, returns after a graceful stop (so main can exit 0), and exits
// the process with status 1 and the error on invalid options, a health
// server that cannot start, or a lost lease (so goroutines that ignored
// their context die too).
func RunOrDie(opt Option) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := Run(ctx, opt); err != nil {
		fmt.Fprintln(os.Stderr, err)
		klog.ErrorS(err, "Exiting")
		klog.FlushAndExit(klog.ExitFlushTimeout, 1)
	}
}

// disabledSource is the health server's source without an election.
type disabledSource struct{}

func (disabledSource) Status() healthz.Status { return healthz.Status{Name: "disabled"} }
