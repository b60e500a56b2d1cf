// Package shard_test measures sharded leadership (package shard) on the
// real kube-apiserver beside a Knative-style baseline (one client-go
// LeaseLock elector per bucket, every replica a candidate for every
// bucket), in one process and one run, with the same durations:
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 30m ./bench/shard
//
// It prints a markdown table (docs/shards.md holds the latest): API
// requests per minute in steady state, counted by a
// rest.Config.WrapTransport round-tripper per side (and, as a check, by
// the API server's apiserver_request_total for leases), the time to
// settle from a cold start, the balance once settled, and the memory a
// shard costs (heap after a GC and goroutine stacks: the fleet over
// -shards shards less the same fleet over a hundredth of them). The baseline runs fewer buckets than shards
// (-buckets) and is scaled linearly to the shard count: each bucket is an
// independent election whose cost does not depend on the others.
package shard_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clientgole "k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/internal/benchtest"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/shard"
)

var (
	timing   = benchtest.TimingFlags("for both sides")
	replicas = flag.Int("replicas", 10, "replicas on each side")
	shards   = flag.Int("shards", 1000, "shards (package shard)")
	buckets  = flag.Int("buckets", 10, "buckets of the baseline, scaled to -shards")
	window   = flag.Duration("window", time.Minute, "how long API requests are counted in steady state")
)

func TestMain(m *testing.M) {
	klog.SetLogger(logr.Discard()) // both sides log every move; the table is the output
	os.Exit(testserver.RunTests(m))
}

// result is one side's figures.
type result struct {
	settle     time.Duration
	counts     map[string]int // client-side, by verb, in the window
	perMinute  float64
	server     int64  // lease requests the API server served in the window
	perReplica []int  // units owned by each replica once settled
	moves      int    // units started during the window (0 in steady state)
	mem        memory // what the replicas hold once settled
	// A graceful stop of one replica, and its return: the time until
	// every shard runs again, balanced, and the requests meanwhile.
	leave, join change
}

type change struct {
	took     time.Duration
	requests int
}

// memory is heap (after a GC) and goroutine stacks, in bytes.
type memory struct{ heap, stacks int64 }

func memoryInUse() memory {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memory{int64(m.HeapAlloc), int64(m.StackInuse)}
}

func (m memory) minus(o memory) memory { return memory{m.heap - o.heap, m.stacks - o.stacks} }

func (m memory) String() string {
	return fmt.Sprintf("heap %.1f MB, stacks %.1f MB", float64(m.heap)/1e6, float64(m.stacks)/1e6)
}

// owners tracks who runs which unit (shard or bucket); a unit started
// while another replica runs it is a violation.
type owners struct {
	mu         sync.Mutex
	owner      []string
	changed    chan struct{}
	starts     atomic.Int64
	violations atomic.Int64
}

func newOwners(n int) *owners {
	return &owners{owner: make([]string, n), changed: make(chan struct{})}
}

func (o *owners) start(u int, id string) {
	o.mu.Lock()
	if o.owner[u] != "" && o.owner[u] != id {
		o.violations.Add(1)
	}
	o.owner[u] = id
	close(o.changed)
	o.changed = make(chan struct{})
	o.mu.Unlock()
	o.starts.Add(1)
}

func (o *owners) stop(u int, id string) {
	o.mu.Lock()
	if o.owner[u] == id {
		o.owner[u] = ""
	}
	close(o.changed)
	o.changed = make(chan struct{})
	o.mu.Unlock()
}

// waitFor waits until cond holds of the owners, up to limit.
func (o *owners) waitFor(b *testing.B, what string, limit time.Duration, cond func(owner []string) bool) {
	deadline := time.After(limit)
	for {
		o.mu.Lock()
		ok, ch := cond(o.owner), o.changed
		o.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			b.Fatalf("not %s within %v", what, limit)
		}
	}
}

func (o *owners) perReplica(ids []string) []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make([]int, len(ids))
	for _, w := range o.owner {
		if i := slices.Index(ids, w); i >= 0 {
			out[i]++
		}
	}
	return out
}

func allOwned(owner []string) bool { return !slices.Contains(owner, "") }

// namespace creates a namespace for one side.
func namespace(b *testing.B, kube *testserver.Kube, name string) string {
	return testserver.CreateNamespace(b, testserver.Clientset(b, kube.Config()), fmt.Sprintf("bench-%s-%d", name, time.Now().UnixNano()))
}

// measure runs the steady-state window once o is settled: it counts the
// API requests through counter and at the server.
func measure(b *testing.B, kube *testserver.Kube, counter *testserver.KubeRequestCounter, o *owners, r *result) {
	time.Sleep(3 * timing.RetryPeriod) // let every replica settle into its loop; not synchronisation
	counter.Reset()
	before, err := kube.LeaseRequests()
	if err != nil {
		b.Fatal(err)
	}
	starts := o.starts.Load()
	time.Sleep(*window) // the measurement window
	r.counts = counter.Counts()
	after, err := kube.LeaseRequests()
	if err != nil {
		b.Fatal(err)
	}
	r.perMinute = float64(counter.Total()) / window.Minutes()
	r.server = after - before
	r.moves = int(o.starts.Load() - starts)
}

// measureShards runs -replicas replicas of shard.Run over m shards until
// settled, and then, with count set, counts the steady state's requests,
// and those of a graceful stop of one replica and of its return (each
// until every shard runs again, balanced).
func measureShards(b *testing.B, kube *testserver.Kube, m int, count bool) *result {
	ns := namespace(b, kube, "shards")
	var counter testserver.KubeRequestCounter
	cfg := counter.CountRequests(kube.Config())
	o := newOwners(m)
	var mu sync.Mutex
	var opened []*k8s.Lock
	launch := func(id string) (stop func()) {
		client := testserver.Clientset(b, cfg)
		opt := shard.Options{Name: "bench", LeaseDuration: timing.LeaseDuration, RenewDeadline: timing.RenewDeadline, RetryPeriod: timing.RetryPeriod,
			Locks: func(name string, fresh bool) (lock.Interface, error) {
				l, err := k8s.New(context.Background(), k8s.Options{Client: client, Namespace: ns, Name: name, Identity: id, DisableEvents: true})
				if err == nil {
					mu.Lock()
					opened = append(opened, l)
					mu.Unlock()
				}
				return l, err
			}}
		return benchtest.RunUntilStopped(func(ctx context.Context) {
			if err := shard.Run(ctx, opt, m, func(ctx context.Context, s int) {
				o.start(s, id)
				<-ctx.Done()
				o.stop(s, id)
			}); err != nil {
				b.Errorf("%s: Run: %v", id, err)
			}
		})
	}
	settled := func(ids []string) time.Duration {
		start := time.Now()
		q := m / len(ids)
		o.waitFor(b, "settled", 20*timing.LeaseDuration, func(owner []string) bool {
			if !allOwned(owner) {
				return false
			}
			n := map[string]int{}
			for _, w := range owner {
				n[w]++
			}
			for _, id := range ids {
				if n[id] < q || n[id] > q+1 {
					return false
				}
			}
			return true
		})
		return time.Since(start)
	}

	mem0 := memoryInUse()
	var ids []string
	var stops []func()
	for i := range *replicas {
		ids = append(ids, fmt.Sprintf("replica-%02d", i))
		stops = append(stops, launch(ids[i]))
	}
	r := &result{settle: settled(ids), perReplica: o.perReplica(ids), mem: memoryInUse().minus(mem0)}
	if count {
		measure(b, kube, &counter, o, r)

		last := len(ids) - 1
		counter.Reset()
		start := time.Now()
		stops[last]()
		settled(ids[:last])
		r.leave = change{time.Since(start), counter.Total()}

		counter.Reset()
		start = time.Now()
		stops[last] = launch(ids[last])
		settled(ids)
		r.join = change{time.Since(start), counter.Total()}
	}
	for _, stop := range stops {
		stop()
	}
	for _, l := range opened {
		l.Close()
	}
	if v := o.violations.Load(); v > 0 {
		b.Errorf("shards: %d starts while another replica ran the shard", v)
	}
	return r
}

// measureBuckets runs the Knative-style baseline: every one of -replicas
// replicas runs a client-go elector with a stock LeaseLock for each of
// -buckets buckets (Knative's "<component>.<queue>.NN-of-MM" Leases).
func measureBuckets(b *testing.B, kube *testserver.Kube) *result {
	ns := namespace(b, kube, "buckets")
	var counter testserver.KubeRequestCounter
	cfg := counter.CountRequests(kube.Config())
	o := newOwners(*buckets)
	var ids []string
	var stops []func()
	mem0 := memoryInUse()
	start := time.Now()
	for i := range *replicas {
		id := fmt.Sprintf("replica-%02d", i)
		ids = append(ids, id)
		client := testserver.Clientset(b, cfg)
		for k := range *buckets {
			le, err := clientgole.NewLeaderElector(clientgole.LeaderElectionConfig{
				Lock: &resourcelock.LeaseLock{
					LeaseMeta:  metav1.ObjectMeta{Namespace: ns, Name: fmt.Sprintf("bench.queue.%02d-of-%02d", k, *buckets)},
					Client:     client.CoordinationV1(),
					LockConfig: resourcelock.ResourceLockConfig{Identity: id},
				},
				LeaseDuration: timing.LeaseDuration, RenewDeadline: timing.RenewDeadline, RetryPeriod: timing.RetryPeriod,
				ReleaseOnCancel: true,
				Callbacks: clientgole.LeaderCallbacks{
					OnStartedLeading: func(ctx context.Context) { o.start(k, id); <-ctx.Done(); o.stop(k, id) },
					OnStoppedLeading: func() {},
				},
			})
			if err != nil {
				b.Fatal(err)
			}
			stops = append(stops, benchtest.RunUntilStopped(le.Run))
		}
	}
	o.waitFor(b, "every bucket led", 20*timing.LeaseDuration, allOwned)
	r := &result{settle: time.Since(start), perReplica: o.perReplica(ids), mem: memoryInUse().minus(mem0)}
	measure(b, kube, &counter, o, r)
	for _, stop := range stops {
		stop()
	}
	return r
}

func BenchmarkShardsOnLeases(b *testing.B) {
	if b.N > 1 {
		b.Skip("runs once: use -benchtime 1x")
	}
	kube := testserver.SharedKube(b)
	s := measureShards(b, kube, *shards, true)
	// The same fleet over a hundredth of the shards: the difference is
	// what the shards themselves cost.
	few := max(*shards/100, *replicas)
	s0 := measureShards(b, kube, few, false)
	k := measureBuckets(b, kube)
	scale := float64(*shards) / float64(*buckets)
	kScaled := k.perMinute * scale
	b.ReportMetric(s.perMinute, "shards-req/min")
	b.ReportMetric(kScaled, "buckets-req/min")

	var t strings.Builder
	fmt.Fprintf(&t, "LeaseDuration %v, RenewDeadline %v, RetryPeriod %v; %d replicas; window %v. Package shard: %d shards. Baseline: %d buckets, every replica a candidate for each, scaled ×%.0f to %d.\n\n",
		timing.LeaseDuration, timing.RenewDeadline, timing.RetryPeriod, *replicas, *window, *shards, *buckets, scale, *shards)
	fmt.Fprintf(&t, "| | package shard, %d shards | baseline, %d buckets | baseline scaled to %d | scaled ÷ shard |\n|---|---:|---:|---:|---:|\n", *shards, *buckets, *shards)
	fmt.Fprintf(&t, "| API requests/min (client side) | %.0f | %.0f | %.0f | %s |\n", s.perMinute, k.perMinute, kScaled, benchtest.Ratio(kScaled, s.perMinute))
	fmt.Fprintf(&t, "| by verb | %s | %s | | |\n", benchtest.PerMinute(s.counts, *window), benchtest.PerMinute(k.counts, *window))
	fmt.Fprintf(&t, "| lease requests/min (API server) | %.0f | %.0f | %.0f | %s |\n",
		float64(s.server)/window.Minutes(), float64(k.server)/window.Minutes(), float64(k.server)/window.Minutes()*scale, benchtest.Ratio(float64(k.server)*scale, float64(s.server)))
	fmt.Fprintf(&t, "| settled after a cold start | %v | %v | | |\n", s.settle.Round(100*time.Millisecond), k.settle.Round(100*time.Millisecond))
	fmt.Fprintf(&t, "| a replica stops (graceful): re-settled after, requests | %v, %d | | | |\n", s.leave.took.Round(time.Millisecond), s.leave.requests)
	fmt.Fprintf(&t, "| it starts again: re-settled after, requests | %v, %d | | | |\n", s.join.took.Round(time.Millisecond), s.join.requests)
	fmt.Fprintf(&t, "| owned per replica, min–max | %d–%d | %d–%d | | |\n", slices.Min(s.perReplica), slices.Max(s.perReplica), slices.Min(k.perReplica), slices.Max(k.perReplica))
	fmt.Fprintf(&t, "| starts in the window | %d | %d | | |\n", s.moves, k.moves)
	fmt.Fprintf(&t, "| heap + stacks held, all replicas | %s | %s | | |\n", s.mem, k.mem)
	per := func(a, b memory, n int) string {
		return fmt.Sprintf("heap %.0f B + stacks %.0f B", float64(a.heap-b.heap)/float64(n), float64(a.stacks-b.stacks)/float64(n))
	}
	fmt.Fprintf(&t, "| per shard or bucket | %s (%d shards less %d) | %s | | |\n",
		per(s.mem, s0.mem, *shards-few), *shards, few, per(k.mem, memory{}, *buckets)+" (all of it)")
	fmt.Println()
	fmt.Println(t.String())
}
