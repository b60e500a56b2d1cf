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
// that can check fencing tokens (terms never go backwards). With
// --fence-file its work goes through a fencing sink, a store that rejects
// any write from a term lower than one it has accepted: what a paused
// leader that wakes up late must meet downstream.
//
// Every write goes through a write gate the elector opens while this copy
// leads (Option.Gate), and the work log is opened by a warm standby
// (Option.Standby) on every copy before it campaigns. With
// --leader-elect-recover, a leader cut off from its store keeps its loop
// running, its writes refused by the gate, and leads again in the same
// term if nobody took over.
//
// With --shards=M the work is split into M shards spread over every copy
// (package shard): each copy works the shards it owns, each with its own
// term and, with --fence-file, its own fencing sink; /status shows the
// assignment (docs/shards.md, "Operations").
//
// Exit status: 0 after a graceful stop (SIGINT, SIGTERM) or --help; 2 for
// bad input (a flag, an option or the lock's configuration), with the error
// printed once, naming the flag; 1 for a failure while running (the health
// port in use, a lost lease), logged once.
package main

import (
	"context"
	"errors"
	goflag "flag"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/gate"
	"github.com/b3df926d/leaderelection/internal/backendflags"
	"github.com/b3df926d/leaderelection/internal/fence"
	"github.com/b3df926d/leaderelection/internal/logformat"
	"github.com/b3df926d/leaderelection/internal/version"
	"github.com/b3df926d/leaderelection/lock"
)

// exitBadInput is the exit status for bad input, as for flag.ExitOnError.
const exitBadInput = 2

func main() {
	err := run(os.Args[1:])
	if errors.Is(err, pflag.ErrHelp) {
		return // the usage is printed; asking for it is not an error
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(exitBadInput)
	}
}

func run(args []string) error {
	fs := pflag.NewFlagSet("example", pflag.ContinueOnError)
	var (
		// ReleaseOnCancel: on SIGTERM the next replica takes over at once
		// (--leader-elect-release-on-cancel=false waits for the lease).
		opt      = leaderelection.Option{LeaseLockName: "example", LeaseLockNamespace: "default", ReleaseOnCancel: true}
		interval time.Duration
		workLog  string
		fenceAt  string
		shards   int
	)
	backends := backendflags.New("example")
	backends.AddFlags(fs)
	fs.StringVar(&opt.ID, "id", "", "This replica's identity (default $POD_NAME, else <hostname>_<pid>).")
	fs.IntVar(&opt.Port, "port", leaderelection.DefaultPort, "Health server port (/healthz, /livez, /readyz, /metrics, /status).")
	fs.BoolVar(&opt.LeaderOnlyReady, "leader-only-ready", false, "Fail /readyz on every replica but the leader, so a Service routes only to the leader (active/passive; see deploy/active-passive.yaml).")
	fs.DurationVar(&interval, "work-interval", 500*time.Millisecond, "How often the leader does a unit of work.")
	fs.StringVar(&workLog, "work-log", "", "If set, append each unit of work, stamped with the term, to this file.")
	fs.StringVar(&fenceAt, "fence-file", "", "If set, write each unit of work through a fencing sink at this path (PATH and PATH.log, under flock): it rejects writes from a term lower than one it has accepted, and counts them.")
	fs.IntVar(&shards, "shards", 0, "If above 0, split the work into this many shards spread over every replica (package shard; every replica needs the same count), each worked by one replica at a time under its own term, through its own fencing sink (--fence-file PATH: PATH.<shard>); 0: one leader does all the work.")
	opt.AddFlags(fs)
	_ = fs.MarkHidden("health-port") // --port, as before
	showVersion := fs.Bool("version", false, "Print the version and exit.")
	klogFlags := klogFlagSet()
	fs.AddGoFlagSet(klogFlags)
	var logFormat logformat.Flag
	logFormat.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Println(version.String("example"))
		return nil
	}
	if err := logFormat.Apply(os.Stderr); err != nil {
		return err
	}
	if opt.ID == "" {
		opt.ID = lock.DefaultIdentity()
	}
	if shards < 0 {
		return fmt.Errorf("--shards=%d: want at least 1, or 0 for one leader", shards)
	}
	if shards > 0 {
		s := &sharded{backends: backends, opt: opt, m: shards}
		if err := s.refuse(fs); err != nil {
			return err
		}
		if err := s.run(interval, fenceAt); err != nil {
			return err
		}
		klog.InfoS("Stopped gracefully")
		klog.Flush()
		return nil
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
	var sink *fence.Sink
	if fenceAt != "" {
		sink = fence.Open(fenceAt)
	}
	// The gate is this copy's only way to write: the elector opens it with
	// the term while this copy leads. The standby opens the work log on
	// every copy, before it campaigns, so the leader starts writing at once.
	g := gate.New()
	opt.Gate = g
	var out workFile
	opt.Standby = func(ctx context.Context, ready func()) { out.open(ctx, workLog, ready) }
	opt.Run = func(ctx context.Context) { work(ctx, g, id, interval, &out, sink) }
	opt.OnNewLeader = func(id string) { klog.InfoS("Observed leader", "leader", id) }
	if err := opt.Validate(); err != nil {
		return err
	}
	leaderelection.RunOrDie(opt)
	// Close the lock before exiting: on gossip, a release is pushed to the
	// other candidates by the releasing process after the write (the first
	// in turn at once, the others a turn step later), and Close waits for
	// those pushes and leaves memberlist. A process that returned from main
	// without it dropped them, and the others waited out the lease
	// (issue #27).
	if c, ok := l.(io.Closer); ok {
		if err := c.Close(); err != nil {
			klog.ErrorS(err, "Closing the lock")
		}
	}
	klog.InfoS("Stopped gracefully")
	klog.Flush()
	return nil
}

// workFile is the work log the standby opens, for the leader to write.
type workFile struct {
	mu sync.Mutex
	f  *os.File // nil: no work log
}

// open opens path (if set), reports ready, and closes it when ctx ends:
// the standby's part of the work.
func (w *workFile) open(ctx context.Context, path string, ready func()) {
	if path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
		if err != nil {
			klog.ErrorS(err, "Opening the work log")
		} else {
			w.mu.Lock()
			w.f = f
			w.mu.Unlock()
		}
	}
	ready()
	<-ctx.Done()
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f != nil {
		w.f.Close()
		w.f = nil
	}
}

// append writes one line, if there is a work log.
func (w *workFile) append(line string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return nil
	}
	// One small O_APPEND write per unit: appends never interleave.
	_, err := w.f.WriteString(line)
	return err
}

// work is the controller's loop: it runs while this process leads (and,
// with --leader-elect-recover, while it recovers, its writes refused by
// the gate), and returns as soon as ctx is cancelled.
func work(ctx context.Context, g *gate.Gate, id string, interval time.Duration, out *workFile, sink *fence.Sink) {
	term, _ := leaderelection.TermFrom(ctx)
	klog.InfoS("Started leading", "term", term)
	t := time.NewTicker(interval)
	defer t.Stop()
	refusing := false
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
		err := g.Do(ctx, func(_ context.Context, term int64) error {
			klog.InfoS("Working", "term", term, "unit", n)
			if err := out.append(fmt.Sprintf("%d %s %d\n", term, id, time.Now().UnixNano())); err != nil {
				return err
			}
			if sink == nil {
				return nil
			}
			// The term is the fencing token: a sink that has seen a later
			// term refuses this write, however late this leader woke up.
			return sink.Write(term, id)
		})
		switch {
		case gate.IsRefused(err):
			if !refusing {
				klog.InfoS("Not leading: writes refused by the gate until this copy leads again (recovering)", "term", term)
			}
		case errors.Is(err, fence.ErrStale):
			klog.InfoS("Write rejected by fencing: a later term has written", "term", term, "err", err)
		case err != nil:
			klog.ErrorS(err, "Writing", "term", term)
		}
		refusing = gate.IsRefused(err)
	}
}

// klogFlagSet exposes klog's flags (-v, ...) on the command line.
func klogFlagSet() *goflag.FlagSet {
	fs := goflag.NewFlagSet("klog", goflag.ContinueOnError)
	klog.InitFlags(fs)
	return fs
}
