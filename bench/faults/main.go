// Command faults is the fault campaign: it starts replicas of the example
// on one backend and its real server (internal/testserver), injects a
// seeded random schedule of faults on the replicas and on the store, and
// measures what users care about: terms held twice, stale writes that got
// past a fencing sink, overlapping leaders, takeover times, leaderless gaps.
//
//	go run ./bench/faults --backend=file --transitions=1000 --json=file.json
//	go run ./bench/faults --backend=file --shards=12 --transitions=1000  # sharded: 1,000 moves
//
// It prints a markdown table per backend (docs/reliability.md holds the
// published ones) and exits 1 if any safety violation was seen; SIGINT
// ends it early with the results so far. The short
// campaign in this package's test runs on every backend in CI.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	code, err := run(os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "faults:", err)
	}
	os.Exit(code)
}

// run is main without the exit: 0 safe, 1 violations or a stuck campaign,
// 2 bad input.
func run(args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("faults", flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := DefaultConfig("")
	var (
		backends = fs.String("backend", "file", "Comma-separated backends to campaign on, one after the other: "+strings.Join(backendNames(), ", ")+".")
		faults   = fs.String("faults", "", "Comma-separated fault kinds to inject (default: every kind the backend has): "+strings.Join(allFaults(), ", ")+".")
		jsonOut  = fs.String("json", "", "Also write the results as JSON to this file.")
		keep     = fs.Bool("keep", false, "Keep the working directory (replica logs, the fencing sink) and print its path.")
		cfg      = def
	)
	fs.IntVar(&cfg.Replicas, "replicas", def.Replicas, "Example processes competing for the lock; 5 for gossip unless set (there they are the voters).")
	fs.IntVar(&cfg.Transitions, "transitions", def.Transitions, "Stop after this many faults that changed the leader (with --shards: after this many moves, a shard's owner changing).")
	fs.IntVar(&cfg.Shards, "shards", 0, "If above 0, the sharded mode: the replicas run the example with --shards=M, each shard writes through a fencing sink of its own, and the campaign checks that no shard is worked by two live replicas at once and that no shard's term is reused or goes backwards (not on gossip; kill-follower and restart-follower do not apply).")
	fs.IntVar(&cfg.MaxFaults, "max-faults", 0, "Stop after this many faults whatever happened (0: ten times --transitions).")
	fs.Int64Var(&cfg.Seed, "seed", time.Now().UnixNano(), "Seed of the random fault schedule (printed, to replay a run).")
	fs.DurationVar(&cfg.LeaseDuration, "lease-duration", def.LeaseDuration, "The replicas' --leader-elect-lease-duration.")
	fs.DurationVar(&cfg.RenewDeadline, "renew-deadline", def.RenewDeadline, "The replicas' --leader-elect-renew-deadline.")
	fs.DurationVar(&cfg.RetryPeriod, "retry-period", def.RetryPeriod, "The replicas' --leader-elect-retry-period.")
	fs.DurationVar(&cfg.WorkInterval, "work-interval", def.WorkInterval, "How often the leader writes to the fencing sink.")
	fs.BoolVar(&cfg.Recover, "recover", false, "Run the replicas with --leader-elect-recover: a leader cut off from its store keeps working behind its closed write gate and leads again in the same term if nobody took over.")
	fs.StringVar(&cfg.ExampleBin, "example", "", "A prebuilt example binary (default: go build of this module's example).")
	if err := fs.Parse(args); err != nil {
		return 2, err
	}
	if fs.NArg() > 0 {
		return 2, fmt.Errorf("unexpected arguments %q: every option is a flag", fs.Args())
	}
	if *faults != "" {
		cfg.Faults = strings.Split(*faults, ",")
	}
	replicasSet := false
	fs.Visit(func(f *flag.Flag) { replicasSet = replicasSet || f.Name == "replicas" })
	var cfgs []Config
	for _, b := range strings.Split(*backends, ",") {
		c := cfg
		c.Backend = b
		if !replicasSet {
			c.Replicas = defaultReplicas(b)
		}
		if err := c.Validate(); err != nil {
			return 2, err
		}
		cfgs = append(cfgs, c)
	}

	// SIGINT or SIGTERM ends the campaign after the current fault, and its
	// results so far are printed.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var results []*Result
	code := 0
	for _, c := range cfgs {
		c.Logf = func(format string, args ...any) {
			fmt.Fprintf(stderr, "%s %s: %s\n", time.Now().Format("15:04:05"), c.Backend, fmt.Sprintf(format, args...))
		}
		c.Stop = ctx.Done()
		res, err := runOne(c, *keep)
		if res != nil {
			res.Markdown(stdout)
			results = append(results, res)
			if !res.Safe() {
				code = 1
			}
		}
		if err != nil {
			fmt.Fprintf(stderr, "faults: --backend=%s: %v\n", c.Backend, err)
			code = 1
		}
	}
	if *jsonOut != "" {
		b, err := json.MarshalIndent(results, "", "  ")
		if err == nil {
			err = os.WriteFile(*jsonOut, append(b, '\n'), 0o644)
		}
		if err != nil {
			return 1, fmt.Errorf("--json=%s: %w", *jsonOut, err)
		}
	}
	return code, nil
}

// runOne runs a campaign with a testing.TB of its own for internal/testserver.
func runOne(cfg Config, keep bool) (res *Result, err error) {
	tb := &cmdTB{keep: keep, logf: cfg.Logf}
	defer tb.cleanup()
	defer func() {
		if v := recover(); v != nil {
			f, ok := v.(fatal)
			if !ok {
				panic(v)
			}
			err = errors.New(string(f))
		}
	}()
	return Run(tb, cfg)
}
