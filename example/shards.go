package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/internal/backendflags"
	"github.com/b3df926d/leaderelection/internal/fence"
	"github.com/b3df926d/leaderelection/shard"
)

// sharded is the example with --shards=M: the work is split into M shards
// spread over every replica (package shard), each shard worked by one
// replica at a time under its own term.
type sharded struct {
	backends *backendflags.Flags
	opt      leaderelection.Option
	m        int
}

// refuse reports the flags that mean nothing with --shards; backends with
// no room for a shard set's records are refused too.
func (s *sharded) refuse(fs interface{ Changed(string) bool }) error {
	if s.backends.Kind() == "gossip" {
		return fmt.Errorf("--shards=%d: --backend=gossip keeps one record per election and cannot hold a shard set's records; use --backend=file, k8s, s3 or git", s.m)
	}
	for _, f := range []string{"work-log", "leader-only-ready", "leader-elect", "leader-elect-recover", "leader-elect-recover-deadline",
		"leader-elect-release-on-cancel", "leader-elect-recampaign", "leader-elect-term-limit"} {
		if fs.Changed(f) {
			return fmt.Errorf("--%s: not with --shards=%d (a shard set always releases its slot on a graceful stop and rejoins after a lost one; each shard writes through its own --fence-file)", f, s.m)
		}
	}
	return nil
}

// run validates the flags and runs the shard set until SIGINT or SIGTERM.
func (s *sharded) run(interval time.Duration, fenceAt string) error {
	id := s.opt.ID
	// The set's records are companions of the lock the backend flags name
	// ("leader.json-slot-3", the Lease "example-shards").
	locks, closeLocks := s.backends.ShardLocks(id, &s.opt, s.opt.LeaseLockName)
	defer closeLocks()
	set := shard.Options{Name: s.opt.LeaseLockName, Locks: locks, Identity: id,
		LeaseDuration: s.opt.LeaseDuration, RenewDeadline: s.opt.RenewDeadline, RetryPeriod: s.opt.RetryPeriod, StopTimeout: s.opt.StopTimeout}
	// The election's own rules name the flags (--leader-elect-*): check
	// the durations and the port through them, on the set's assignment
	// record, before the set's own.
	check := s.opt
	check.Run = func(context.Context) {}
	l, err := locks(s.opt.LeaseLockName+shard.AssignmentSuffix, false)
	if err != nil {
		return err
	}
	check.Lock = l
	if err := check.Validate(); err != nil {
		return err
	}
	if err := set.Validate(s.m); err != nil {
		return err
	}
	var health healthz.Options
	if s.opt.Port != leaderelection.NoHealthServer {
		port := s.opt.Port
		if port == 0 {
			port = leaderelection.DefaultPort
		}
		health.Addr = net.JoinHostPort(s.opt.HealthBindAddress, strconv.Itoa(port))
	}
	shard.RunOrDie(health, set, s.m, func(ctx context.Context, n int) { workShard(ctx, n, id, interval, fenceAt) })
	return nil
}

// workShard is one shard's loop: it runs while this replica owns shard
// n, and writes each unit of work through the shard's own fencing sink
// (--fence-file PATH: PATH.<n>), stamped with the shard's term.
func workShard(ctx context.Context, n int, id string, interval time.Duration, fenceAt string) {
	term, _ := shard.TermFrom(ctx)
	klog.InfoS("Started shard", "shard", n, "term", term)
	var sink *fence.Sink
	if fenceAt != "" {
		sink = fence.Open(fenceAt + "." + strconv.Itoa(n))
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for unit := 1; ; unit++ {
		select {
		case <-ctx.Done():
			klog.InfoS("Stopped shard", "shard", n, "term", term)
			return
		case <-t.C:
		}
		klog.V(1).InfoS("Working", "shard", n, "term", term, "unit", unit)
		if sink == nil {
			continue
		}
		// The shard's term is its fencing token: the sink refuses it once
		// a later owner of the shard has written.
		err := sink.Write(term, id)
		switch {
		case errors.Is(err, fence.ErrStale):
			klog.InfoS("Write rejected by fencing: a later term has written", "shard", n, "term", term, "err", err)
		case err != nil:
			klog.ErrorS(err, "Writing", "shard", n, "term", term)
		}
	}
}
