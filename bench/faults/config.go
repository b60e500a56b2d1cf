package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/lock"
)

// Fault kinds. Replica faults act on the example processes; store faults on
// the backend's server or the latency proxy in front of it.
const (
	KillLeader      = "kill-leader"      // SIGKILL the leader
	KillFollower    = "kill-follower"    // SIGKILL a follower
	TermLeader      = "term-leader"      // SIGTERM the leader (graceful release)
	PauseLong       = "pause-long"       // SIGSTOP the leader for longer than LeaseDuration
	PauseShort      = "pause-short"      // SIGSTOP the leader for less than LeaseDuration-RenewDeadline
	RestartFollower = "restart-follower" // SIGTERM a follower and start it again
	StoreRestart    = "store-restart"    // restart the store's server process mid-term
	LatencyHigh     = "latency-high"     // delay every store packet by more than RenewDeadline
	LatencyLow      = "latency-low"      // delay every store packet well below RenewDeadline
	DropConns       = "drop-connections" // cut every open connection to the store
	DeleteRecord    = "delete-record"    // delete the lock record behind the leader's back
	StoreOutage     = "store-outage"     // the store unreachable for every replica, longer than the lease

	// gossip: the replicas are the voters, and the store.
	PartitionMinority = "partition-leader-minority" // cut the leader and a minority off from the rest, then heal
	PartitionMajority = "partition-leader-majority" // cut a minority off from the leader's majority, then heal
	RestartAmnesia    = "restart-follower-amnesia"  // SIGKILL a follower, wipe its StateDir, start it again
)

var replicaFaults = []string{KillLeader, KillFollower, TermLeader, PauseLong, PauseShort, RestartFollower}

// notSharded are the faults with no meaning in the sharded mode (--shards):
// every replica owns shards, so there is no follower to act on.
var notSharded = []string{KillFollower, RestartFollower}

// backendFaults lists, per backend, the faults that apply to it: the file
// backend has no server and no network. store-outage applies to every
// backend, each in its own way (store.outage): the proxy refuses
// connections; the file's flock is held (a hung store); every gossip
// voter is cut off from every other (no quorum anywhere).
var backendFaults = map[string][]string{
	"file": append(slices.Clone(replicaFaults), DeleteRecord, StoreOutage),
	"k8s":  append(slices.Clone(replicaFaults), StoreRestart, LatencyHigh, LatencyLow, DropConns, DeleteRecord, StoreOutage),
	"s3":   append(slices.Clone(replicaFaults), StoreRestart, LatencyHigh, LatencyLow, DropConns, DeleteRecord, StoreOutage),
	"git":  append(slices.Clone(replicaFaults), StoreRestart, LatencyHigh, LatencyLow, DropConns, DeleteRecord, StoreOutage),
	// gossip has no store apart from the replicas: store faults do not
	// apply; partitions and voter restarts without state do.
	"gossip": append(slices.Clone(replicaFaults), PartitionMinority, PartitionMajority, RestartAmnesia, StoreOutage),
}

func backendNames() []string {
	names := make([]string, 0, len(backendFaults))
	for b := range backendFaults {
		names = append(names, b)
	}
	slices.Sort(names)
	return names
}

func allFaults() []string {
	seen := map[string]bool{}
	var all []string
	for _, fs := range backendFaults {
		for _, f := range fs {
			if !seen[f] {
				seen[f] = true
				all = append(all, f)
			}
		}
	}
	slices.Sort(all)
	return all
}

// Config is one campaign on one backend.
type Config struct {
	// Backend is file, k8s, s3, git or gossip.
	Backend string
	// Replicas is how many example processes compete (at least 2; for
	// gossip they are also the voters: an odd number, at least 3).
	Replicas int
	// Transitions ends the campaign after this many faults that changed
	// the term.
	Transitions int
	// MaxFaults ends it after this many faults whatever happened (0: ten
	// times Transitions).
	MaxFaults int
	// Faults are the kinds to inject (empty: every kind the backend has).
	Faults []string
	// Seed makes the schedule reproducible.
	Seed int64
	// The elector's durations, passed to every replica.
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// WorkInterval is how often the leader writes to the fencing sink.
	WorkInterval time.Duration
	// Shards, above 0, is the sharded mode: the replicas run the example
	// with --shards=Shards (package shard), each shard writes through a
	// fencing sink of its own, and Transitions counts moves (a shard's
	// owner changing) instead of new leaders (docs/reliability.md,
	// "Sharded").
	Shards int
	// Recover runs the replicas with --leader-elect-recover (its default
	// deadline, 4 × LeaseDuration): a leader cut off from its store keeps
	// its work loop running, its writes refused by the gate, and leads
	// again in the same term if nobody took over.
	Recover bool
	// ExampleBin is the example binary (empty: built from this module).
	ExampleBin string
	// Logf reports progress (nil: silent).
	Logf func(format string, args ...any)
	// Stop, when closed, ends the campaign after the current fault, with
	// the results so far (nil: never).
	Stop <-chan struct{}
}

// DefaultConfig is the campaign's fast preset: the shortest durations the
// elector accepts on every backend (the Lease stores whole seconds). gossip
// runs 5 replicas, all voters, so that a majority survives a partition or
// two replicas down.
func DefaultConfig(backend string) Config {
	return Config{
		Backend:       backend,
		Replicas:      defaultReplicas(backend),
		Transitions:   1000,
		Seed:          1,
		LeaseDuration: 2 * time.Second,
		RenewDeadline: 1500 * time.Millisecond,
		RetryPeriod:   time.Second,
		WorkInterval:  50 * time.Millisecond,
	}
}

// Validate checks the configuration; each error names the flag at fault.
func (c *Config) Validate() error {
	kinds, ok := backendFaults[c.Backend]
	if !ok {
		return fmt.Errorf("--backend=%q is not a backend: want one of %s", c.Backend, strings.Join(backendNames(), ", "))
	}
	var errs []error
	for _, f := range c.Faults {
		if !slices.Contains(kinds, f) {
			if slices.Contains(allFaults(), f) {
				errs = append(errs, fmt.Errorf("--faults: %q does not apply to --backend=%s: it has %s", f, c.Backend, strings.Join(kinds, ", ")))
			} else {
				errs = append(errs, fmt.Errorf("--faults: %q is not a fault: want some of %s", f, strings.Join(allFaults(), ", ")))
			}
		}
	}
	if c.Replicas < 2 {
		errs = append(errs, fmt.Errorf("--replicas=%d: want at least 2, or no one can take over", c.Replicas))
	} else if c.Backend == "gossip" && (c.Replicas < 3 || c.Replicas%2 == 0) {
		errs = append(errs, fmt.Errorf("--replicas=%d: --backend=gossip's replicas are its voters: want an odd number, at least 3", c.Replicas))
	}
	if c.Transitions < 1 {
		errs = append(errs, fmt.Errorf("--transitions=%d: want at least 1", c.Transitions))
	}
	if c.Shards < 0 {
		errs = append(errs, fmt.Errorf("--shards=%d: want at least 1, or 0 for one leader", c.Shards))
	}
	if c.Shards > 0 {
		if c.Backend == "gossip" {
			errs = append(errs, fmt.Errorf("--shards=%d: --backend=gossip cannot hold a shard set's records (docs/shards.md); want one of file, git, k8s, s3", c.Shards))
		}
		if c.Recover {
			errs = append(errs, fmt.Errorf("--recover: not with --shards=%d (a shard set has no same-term recovery)", c.Shards))
		}
		for _, f := range c.Faults {
			if slices.Contains(notSharded, f) {
				errs = append(errs, fmt.Errorf("--faults: %q does not apply with --shards=%d: every replica owns shards, none is a follower", f, c.Shards))
			}
		}
	}
	if c.MaxFaults < 0 {
		errs = append(errs, fmt.Errorf("--max-faults=%d must not be negative", c.MaxFaults))
	}
	if c.WorkInterval <= 0 {
		errs = append(errs, fmt.Errorf("--work-interval=%v: want a positive duration", c.WorkInterval))
	}
	// The elector's own rules, then the store's, through the same
	// validation RunOrDie applies.
	var l lock.Interface = placeholderLock{}
	if rules, ok := storeRules[c.Backend]; ok {
		l = ruledPlaceholderLock{DurationRules: rules}
	}
	opt := leaderelection.Option{
		ID: "campaign", Lock: l, Run: func(context.Context) {},
		LeaseDuration: c.LeaseDuration, RenewDeadline: c.RenewDeadline, RetryPeriod: c.RetryPeriod,
		Port: leaderelection.NoHealthServer,
	}
	if err := opt.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("--lease-duration=%v --renew-deadline=%v --retry-period=%v: the elector rejects them: %w", c.LeaseDuration, c.RenewDeadline, c.RetryPeriod, err))
	}
	return errors.Join(errs...)
}

// storeRules are the backends' lock.DurationRules, as their locks state
// them: a Lease's whole seconds. A nil *k8s.Lock states them without a
// Lease (the method reads no field).
var storeRules = map[string]lock.DurationRules{"k8s": (*k8s.Lock)(nil)}

func defaultReplicas(backend string) int {
	if backend == "gossip" {
		return 5
	}
	return 3
}

// placeholderLock lets Option.Validate check the durations; it is never
// locked.
type placeholderLock struct{ lock.Interface }

func (placeholderLock) Identity() string { return "campaign" }
func (placeholderLock) Describe() string { return "campaign" }

// ruledPlaceholderLock is a placeholderLock with its store's rules.
type ruledPlaceholderLock struct {
	placeholderLock
	lock.DurationRules
}

// kinds returns the faults to draw from.
func (c *Config) kinds() []string {
	if len(c.Faults) > 0 {
		return c.Faults
	}
	if c.Shards > 0 {
		return slices.DeleteFunc(slices.Clone(backendFaults[c.Backend]), func(f string) bool { return slices.Contains(notSharded, f) })
	}
	return backendFaults[c.Backend]
}

// pause durations: long enough that followers take over, or short enough
// that the leader renews in time after it wakes.
func (c *Config) pauseLong() time.Duration  { return c.LeaseDuration + c.RetryPeriod }
func (c *Config) pauseShort() time.Duration { return (c.LeaseDuration - c.RenewDeadline) / 2 }

// outage is how long a store-outage lasts: longer than the lease, so that
// every follower's view of it expires, and shorter than the default
// RecoverDeadline (4 × LeaseDuration) after the last good renewal, so
// that a recovering leader may still lead again in its term.
func (c *Config) outage() time.Duration { return 2 * c.LeaseDuration }

// latencies per forwarded chunk: above RenewDeadline every request misses
// it; below, a store round trip of a few chunks still fits well inside it.
func (c *Config) latencyHigh() time.Duration { return c.RenewDeadline + c.RetryPeriod/4 }
func (c *Config) latencyLow() time.Duration  { return c.RenewDeadline / 20 }

// partitionHold is how long a partition with the leader on the majority
// side lasts: long enough for the minority to have tried to elect (its
// lease ran out by its clock) had it been able to.
func (c *Config) partitionHold() time.Duration {
	return c.LeaseDuration + c.RenewDeadline + c.RetryPeriod
}
