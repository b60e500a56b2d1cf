package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/signal"
	"syscall"

	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection"
)

// serveCommand is "leaderelection serve [flags]": a sidecar that campaigns
// and serves /leader (200 while leading, 503 otherwise) next to /healthz,
// /livez, /readyz, /metrics and /status, until SIGTERM or SIGINT.
func serveCommand(ctx context.Context, args []string, stderr io.Writer) (int, error) {
	c := newCommon("serve", stderr)
	c.addIdentity()
	c.fs.IntVar(&c.opt.Port, "port", leaderelection.DefaultPort, "Health server port (/leader, /healthz, /livez, /readyz, /metrics, /status).")
	c.fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: leaderelection serve [flags]\n\nFlags:\n%s", c.fs.FlagUsages())
	}
	if err := c.parse(args); err != nil {
		return 0, err
	}
	if c.fs.NArg() > 0 {
		return 0, usageErr("serve takes no arguments, got %q (to run a command while leading: leaderelection run -- CMD)", c.fs.Args())
	}
	l, closeLock, err := c.lock(ctx)
	if err != nil {
		return 0, err
	}
	defer closeLock()
	c.opt.Lock = l
	c.opt.Run = func(ctx context.Context) { <-ctx.Done() }
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
		// A sidecar stays a candidate: nothing of the app's ran under the
		// lost lease but its own answer to /leader, now 503.
		klog.InfoS("Campaigning again after losing the lease", "err", err)
	}
}
