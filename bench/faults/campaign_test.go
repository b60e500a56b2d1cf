package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// buildExample builds the example binary the campaigns run, with the
// gossip fault hook (inert on the other backends: its flag is not given).
func buildExample(t *testing.T) string {
	t.Helper()
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "example")
	cmd := exec.Command("go", "build", "-tags", faultTag, "-o", bin, "./example")
	cmd.Dir = filepath.Dir(strings.TrimSpace(string(gomod)))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building the example: %v\n%s", err, out)
	}
	return bin
}

// knownBugs are faults left out of CI on a backend until a fix lands.
//
// s3, delete-record was the last one, and is back: a follower whose reads
// all fell while the record was gone missed a whole term between two
// deletions and reused it ("term went from 37 (r2) to 36 (r0)", "41 (r1)
// to 40 (r0)", docs/reliability.md finding 3). Fixed by the claim
// (docs/elector.md, "A deleted record"; the scenario
// DeletedRecordRecreatedByAFollowerThatMissedATerm in lock/electiontest).
var knownBugs = map[string][]string{}

// TestShortCampaign runs every fault kind twice on every backend against
// its real server, and fails on any safety violation: the CI campaign. The
// full one (1,000 transitions per backend) is `go run ./bench/faults`.
func TestShortCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("a few minutes of real faults")
	}
	bin := buildExample(t)
	for _, backend := range backendNames() {
		t.Run(backend, func(t *testing.T) {
			cfg := DefaultConfig(backend)
			for _, k := range backendFaults[backend] {
				if !slices.Contains(knownBugs[backend], k) {
					cfg.Faults = append(cfg.Faults, k)
				}
			}
			cfg.Transitions = 1 << 30
			cfg.MaxFaults = 2 * len(cfg.Faults)
			cfg.Seed = 12
			cfg.ExampleBin = bin
			cfg.Logf = t.Logf
			checkCampaign(t, backend, cfg)
		})
	}
}

// TestStoreOutageWithRecovery runs store-outage (the store unreachable for
// every replica for twice the lease) twice on every backend with the
// replicas' --leader-elect-recover, and fails on any safety violation: a
// leader that leads again in its term after the outage must not have
// shared it, nor had a write accepted out of term order.
func TestStoreOutageWithRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("real store outages")
	}
	bin := buildExample(t)
	for _, backend := range backendNames() {
		t.Run(backend, func(t *testing.T) {
			cfg := DefaultConfig(backend)
			cfg.Faults = []string{StoreOutage}
			cfg.Recover = true
			cfg.Transitions = 1 << 30
			cfg.MaxFaults = 2
			cfg.Seed = 12
			cfg.ExampleBin = bin
			cfg.Logf = t.Logf
			checkCampaign(t, backend, cfg)
		})
	}
}

// checkCampaign runs a campaign and fails t on a safety violation, a
// fault kind never injected, an unexpected exit or a campaign that could
// not go on.
func checkCampaign(t *testing.T, backend string, cfg Config) *Result {
	t.Helper()
	res, err := Run(t, cfg)
	if res != nil {
		var md bytes.Buffer
		res.Markdown(&md)
		t.Logf("\n%s", md.String())
		if !res.Safe() {
			t.Errorf("safety violations on %s:\n%s", backend, strings.Join(res.Violations, "\n"))
		}
		for k, n := range res.Faults {
			if n == 0 {
				t.Errorf("fault %s never injected", k)
			}
		}
		if len(res.Faults) != len(cfg.Faults) {
			t.Errorf("injected %v, want every kind of %v", res.Faults, cfg.Faults)
		}
		if res.UnexpectedExits > 0 || res.LivezFailures > 0 {
			t.Errorf("%d unexpected exits, %d /livez failures:\n%s", res.UnexpectedExits, res.LivezFailures, strings.Join(res.Problems, "\n"))
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// The command refuses bad input with a message naming the flag, before it
// starts anything.
func TestBadInputIsRefusedWithAClearMessage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"unknown backend", []string{"--backend=zookeeper"}, []string{`--backend="zookeeper" is not a backend`, "file, git, gossip, k8s, s3"}},
		{"one of several backends unknown", []string{"--backend=file,etcd"}, []string{`--backend="etcd"`}},
		{"unknown fault", []string{"--faults=kill-leader,explode"}, []string{`--faults: "explode" is not a fault`, "kill-leader"}},
		{"fault the backend lacks", []string{"--backend=file", "--faults=latency-high"}, []string{`"latency-high" does not apply to --backend=file`}},
		{"store fault on gossip", []string{"--backend=gossip", "--faults=kill-leader,store-restart"}, []string{`"store-restart" does not apply to --backend=gossip`, "partition-leader-minority"}},
		{"partition on a backend with a store", []string{"--backend=k8s", "--faults=partition-leader-majority"}, []string{`"partition-leader-majority" does not apply to --backend=k8s`}},
		{"even number of gossip voters", []string{"--backend=gossip", "--replicas=4"}, []string{"--replicas=4", "odd number, at least 3"}},
		{"one gossip voter", []string{"--backend=gossip", "--replicas=1"}, []string{"--replicas=1: want at least 2"}},
		{"lease not above renew deadline", []string{"--lease-duration=1s", "--renew-deadline=1s"}, []string{"--lease-duration=1s", "LeaseDuration (1s", "must be greater than RenewDeadline (1s"}},
		{"retry period below 1s", []string{"--retry-period=500ms", "--renew-deadline=700ms"}, []string{"--retry-period=500ms", "RetryPeriod (500ms", "must be at least 1s"}},
		{"renew deadline not above 1.2 retry periods", []string{"--renew-deadline=1100ms"}, []string{"--renew-deadline=1.1s", "RenewDeadline (1.1s", "must be greater than RetryPeriod×1.2"}},
		{"Lease rounds to whole seconds", []string{"--backend=k8s", "--lease-duration=2500ms", "--renew-deadline=2s"}, []string{"--lease-duration=2.5s", "whole seconds"}},
		{"one replica", []string{"--replicas=1"}, []string{"--replicas=1: want at least 2"}},
		{"no transitions", []string{"--transitions=0"}, []string{"--transitions=0"}},
		{"stray argument", []string{"file"}, []string{"unexpected arguments"}},
		{"negative shard count", []string{"--shards=-1"}, []string{"--shards=-1: want at least 1"}},
		{"shards on gossip", []string{"--backend=gossip", "--shards=12"}, []string{"--shards=12: --backend=gossip cannot hold a shard set's records"}},
		{"shards with recovery", []string{"--shards=12", "--recover"}, []string{"--recover: not with --shards=12"}},
		{"a follower fault with shards", []string{"--shards=12", "--faults=kill-leader,kill-follower"}, []string{`"kill-follower" does not apply with --shards=12`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code, err := run(tc.args, &stdout, &stderr)
			if code != 2 || err == nil {
				t.Fatalf("run(%q) = %d, %v; want 2 and an error", tc.args, code, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if stdout.Len() > 0 {
				t.Errorf("printed results for bad input: %s", stdout.String())
			}
		})
	}
}

// Stop ends a campaign after the current fault, with the results so far.
func TestStopEndsTheCampaignWithResults(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts the example")
	}
	cfg := DefaultConfig("file")
	cfg.ExampleBin = buildExample(t)
	stop := make(chan struct{})
	close(stop)
	cfg.Stop = stop
	res, err := Run(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if res == nil || res.FaultsTotal != 0 || !res.Safe() || res.AcceptedWrites == 0 {
		t.Fatalf("result %+v, want no fault, a leader that worked, no violation", res)
	}
}

// The gossip campaign partitions the replicas through a hook that only the
// example built with -tags lefaultinject has: the default build carries
// neither the hook nor gossiptest. (example's
// TestBadInputIsAClearErrorFromTheBinary checks that its default binary
// refuses --gossip-fault-file.)
func TestDefaultBuildHasNoGossipFaultHook(t *testing.T) {
	deps := func(tags ...string) string {
		args := append([]string{"list", "-deps"}, tags...)
		out, err := exec.Command("go", append(args, "github.com/b3df926d/leaderelection/example")...).CombinedOutput()
		if err != nil {
			t.Fatalf("go %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	const hook = "github.com/b3df926d/leaderelection/backend/gossip/gossiptest"
	if strings.Contains(deps(), hook) {
		t.Errorf("the default build of the example links %s", hook)
	}
	if !strings.Contains(deps("-tags", faultTag), hook) {
		t.Errorf("the -tags %s build of the example does not link %s: the campaign cannot partition", faultTag, hook)
	}
}

// A gossip campaign on an example without the hook (here a stand-in that
// refuses the flag as the default build does) stops at once, saying how to
// build it, instead of waiting for a leader.
func TestGossipCampaignRefusesAnExampleWithoutTheHook(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "example")
	script := "#!/bin/sh\necho 'example: unknown flag: --gossip-fault-file' >&2\nexit 2\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig("gossip")
	cfg.ExampleBin = bin
	_, err := Run(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "-tags "+faultTag) || !strings.Contains(err.Error(), "unknown flag: --gossip-fault-file") {
		t.Fatalf("Run = %v, want an error that names -tags %s and shows the replica's log", err, faultTag)
	}
}

// shardedBackends are the backends the sharded campaign's test runs on.
// gossip cannot hold a shard set; git can, but at the campaign's
// 2s/1.5s/1s its replicas, each polling the 17 records every RetryPeriod
// through git daemon, missed RenewDeadline and stepped down in a loop on
// the shared 2-core machine (docs/reliability.md, "Sharded").
var shardedBackends = []string{"file", "k8s", "s3"}

// TestShortShardedCampaign runs every fault kind of the sharded mode once
// on every backend whose records a shard set can use, 3 replicas of the
// example with --shards=12, and fails on any shard worked by two live
// replicas, any per-shard term reused or going backwards, a fault kind
// never injected, an unexpected exit, or no move at all.
func TestShortShardedCampaign(t *testing.T) {
	if testing.Short() {
		t.Skip("a few minutes of real faults")
	}
	bin := buildExample(t)
	for _, backend := range shardedBackends {
		t.Run(backend, func(t *testing.T) {
			cfg := DefaultConfig(backend)
			cfg.Shards = 12
			cfg.Faults = cfg.kinds()
			cfg.Transitions = 1 << 30
			cfg.MaxFaults = len(cfg.Faults)
			cfg.Seed = 12
			cfg.ExampleBin = bin
			cfg.Logf = t.Logf
			res := checkCampaign(t, backend, cfg)
			if res.Transitions == 0 || res.AcceptedWrites == 0 {
				t.Errorf("%d moves, %d writes accepted: want shards that moved and worked", res.Transitions, res.AcceptedWrites)
			}
		})
	}
}
