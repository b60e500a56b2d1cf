// Command example is a controller-shaped program made highly available by
// leaderelection: start it several times and exactly one copy works.
//
//	go run ./example --id=1 --port=8081 &
//	go run ./example --id=2 --port=8082 &
//	curl -s localhost:8081/status
//
// It logs "working" with its term only while it leads, and stops within a
// second of losing the lock. With --work-log it also appends one line per
// unit of work, stamped with its term, to a shared file: a downstream store
// that can check fencing tokens (terms never go backwards).
package main

import (
	"context"
	goflag "flag"
	"fmt"
	"os"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/internal/backendflags"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(2)
	}
}

func run(args []string) error {
	fs := pflag.NewFlagSet("example", pflag.ContinueOnError)
	var (
		opt      = leaderelection.Option{LeaseLockName: "example", LeaseLockNamespace: "default", ReleaseOnCancel: true}
		interval time.Duration
		workLog  string
	)
	backends := backendflags.New("example")
	backends.AddFlags(fs)
	fs.StringVar(&opt.ID, "id", "", "This replica's identity (default $POD_NAME).")
	fs.IntVar(&opt.Port, "port", leaderelection.DefaultPort, "Health server port (/healthz, /livez, /readyz, /metrics, /status).")
	fs.DurationVar(&interval, "work-interval", 500*time.Millisecond, "How often the leader does a unit of work.")
	fs.StringVar(&workLog, "work-log", "", "If set, append each unit of work, stamped with the term, to this file.")
	opt.AddFlags(fs)
	klogFlags := klogFlagSet()
	fs.AddGoFlagSet(klogFlags)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if opt.ID == "" {
		opt.ID = os.Getenv("POD_NAME")
	}
	if opt.ID == "" {
		return fmt.Errorf("--id is empty and POD_NAME is not set: each replica needs a unique identity")
	}
	l, err := backends.Lock(context.Background(), opt.ID, &opt)
	if err != nil {
		return err
	}
	opt.Lock = l
	id := opt.ID
	if l != nil {
		id = l.Identity()
	}
	opt.Run = func(ctx context.Context) { work(ctx, id, interval, workLog) }
	opt.OnNewLeader = func(id string) { klog.InfoS("Observed leader", "leader", id) }
	leaderelection.RunOrDie(opt)
	klog.InfoS("Stopped gracefully")
	klog.Flush()
	return nil
}

// work is the controller's loop: it runs only while this process leads and
// returns as soon as ctx is cancelled.
func work(ctx context.Context, id string, interval time.Duration, workLog string) {
	term, _ := leaderelection.TermFrom(ctx)
	klog.InfoS("Started leading", "term", term)
	var out *os.File
	if workLog != "" {
		f, err := os.OpenFile(workLog, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			klog.ErrorS(err, "Opening the work log")
		} else {
			out = f
			defer f.Close()
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			klog.InfoS("Stopped leading", "term", term)
			return
		case <-t.C:
		}
		if ctx.Err() != nil {
			continue
		}
		klog.InfoS("Working", "term", term, "unit", n)
		if out != nil {
			// One small O_APPEND write per unit: appends never interleave.
			fmt.Fprintf(out, "%d %s %d\n", term, id, time.Now().UnixNano())
		}
	}
}

// klogFlagSet exposes klog's flags (-v, ...) on the command line.
func klogFlagSet() *goflag.FlagSet {
	fs := goflag.NewFlagSet("klog", goflag.ContinueOnError)
	klog.InitFlags(fs)
	return fs
}
