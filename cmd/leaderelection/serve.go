package main

import (
	"context"
	"errors"
	"io"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection"
)

// serveCommand is "leaderelection serve [flags]": a sidecar that campaigns
// and serves /leader (200 while leading, 503 otherwise) next to /healthz,
// /livez, /readyz, /metrics and /status, until SIGTERM or SIGINT.
func serveCommand(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	c := newCommon("serve", stdout, stderr)
	c.addIdentity()
	c.fs.IntVar(&c.opt.Port, "port", leaderelection.DefaultPort, "Health server port (/leader, /healthz, /livez, /readyz, /metrics, /status).")
	c.fs.Usage = func() {
		c.usage(stderr, "Usage: leaderelection serve [flags]\n")
	}
	if err := c.parse(args); err != nil {
		return 0, err
	}
	if c.fs.NArg() > 0 {
		return 0, usageErr("serve takes no arguments, got %q (to run a command while leading: leaderelection run -- CMD)", c.fs.Args())
	}
	l, closeLock, err := c.lock(ctx, "")
	if err != nil {
		return 0, err
	}
	defer closeLock()
	c.opt.Lock = l
	c.opt.Run = func(ctx context.Context) { <-ctx.Done() }
	// A sidecar stays a candidate after a lost lease, answering 503
	// meanwhile; its function never ignores its context.
	c.opt.Recampaign = true
	if err := c.opt.Validate(); err != nil {
		return 0, usageErr("%w", err)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	for {
		err := leaderelection.Run(ctx, c.opt)
		if !errors.Is(err, leaderelection.ErrLeaseLost) || ctx.Err() != nil {
			return exitOK, err
		}
		// Recampaign ends Run only if the function outlived StopTimeout,
		// which this one cannot; campaign again all the same.
		klog.InfoS("Campaigning again after losing the lease", "err", err)
	}
}
