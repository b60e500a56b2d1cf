package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/internal/backendflags"
	"github.com/b3df926d/leaderelection/internal/fence"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/shard"
)

// sharded is the example with --shards=M: the work is split into M shards
// spread over every replica (package shard), each shard worked by one
// replica at a time under its own term.
type sharded struct {
	backends *backendflags.Flags
	opt      leaderelection.Option
	m        int

	mu      sync.Mutex
	handles []lock.Interface // to close after Run
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

// locks is shard.Options.Locks: every record of the set is a companion of
// the lock --backend and its flags name (backendflags.CompanionLock), its
// name's suffix after the set's name ("-slot-3", "-shards"). They never
// read from a cache, so every handle may serve as a fresh one.
func (s *sharded) locks(name string, _ bool) (lock.Interface, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	suffix := strings.TrimPrefix(name, s.opt.LeaseLockName)
	l, err := s.backends.CompanionLock(context.Background(), s.opt.ID, &s.opt, suffix)
	if err != nil {
		return nil, err
	}
	if l == nil {
		// A Lease, through the client CompanionLock just made: one per
		// handle, so that no handle's requests wait behind another's in
		// client-go's rate limiter (a renewal queued behind a burst of
		// barrier reads missed its RenewDeadline). No events: a shard set
		// records none.
		if l, err = k8s.New(context.Background(), k8s.Options{Client: s.opt.KubeClient, Namespace: s.opt.LeaseLockNamespace, Name: name, Identity: s.opt.ID, DisableEvents: true}); err != nil {
			return nil, fmt.Errorf("--backend=k8s: %w", err)
		}
	}
	s.handles = append(s.handles, l)
	return l, nil
}

// run validates the flags and runs the shard set until SIGINT or SIGTERM.
func (s *sharded) run(interval time.Duration, fenceAt string) error {
	id := s.opt.ID
	set := shard.Options{Name: s.opt.LeaseLockName, Locks: s.locks, Identity: id,
		LeaseDuration: s.opt.LeaseDuration, RenewDeadline: s.opt.RenewDeadline, RetryPeriod: s.opt.RetryPeriod, StopTimeout: s.opt.StopTimeout}
	// The election's own rules name the flags (--leader-elect-*): check
	// the durations and the port through them, on the set's assignment
	// record, before the set's own.
	check := s.opt
	check.Run = func(context.Context) {}
	l, err := s.locks(s.opt.LeaseLockName+"-shards", false)
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
	s.close()
	return nil
}

// close closes the handles that hold resources (a Lease's watch).
func (s *sharded) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.handles {
		switch c := l.(type) {
		case io.Closer:
			if err := c.Close(); err != nil {
				klog.ErrorS(err, "Closing a shard record's lock", "lock", l.Describe())
			}
		case interface{ Close() }:
			c.Close()
		}
	}
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
