// Package k8s_test benchmarks this module's elector on the Lease backend
// against client-go's elector with its stock LeaseLock, in one process and
// one run, on one real kube-apiserver, with the same durations:
//
//	go test -run '^$' -bench . -benchtime 1x -timeout 30m ./bench/k8s
//
// It prints a markdown table (docs/benchmarks.md holds the latest):
// graceful hand-over latency (the leader is told to stop, with
// ReleaseOnCancel → the next leader's OnStartedLeading), crash fail-over
// beyond LeaseDuration (the leader stops renewing without releasing; from
// the RenewTime of its last renewal → the next leader's OnStartedLeading,
// minus LeaseDuration), and API requests per minute for 1 leader and 9
// followers, counted by a rest.Config.WrapTransport round-tripper.
package k8s_test

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection/internal/benchtest"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

var (
	timing     = benchtest.TimingFlags("for both electors")
	candidates = flag.Int("candidates", 10, "candidates per elector: 1 leader and the rest followers")
	window     = flag.Duration("window", time.Minute, "how long API requests are counted in steady state")
	handovers  = flag.Int("handovers", 20, "graceful hand-overs measured per elector")
	crashes    = flag.Int("crashes", 10, "crash fail-overs measured per elector")
)

func TestMain(m *testing.M) {
	klog.SetLogger(logr.Discard()) // client-go's elector logs every attempt; the table is the output
	os.Exit(testserver.RunTests(m))
}

func BenchmarkLeaseElection(b *testing.B) {
	if b.N > 1 {
		b.Skip("runs once: use -benchtime 1x")
	}
	kube := testserver.SharedKube(b)
	plan := benchtest.LeasePlan{
		Timing:     *timing,
		Candidates: *candidates, Window: *window, Handovers: *handovers, Crashes: *crashes,
	}
	o := benchtest.MeasureLease(b, kube, benchtest.Ours, plan)
	c := benchtest.MeasureLease(b, kube, benchtest.ClientGo, plan)
	pct, ms := benchtest.Pct, benchtest.Ms
	b.ReportMetric(benchtest.Millis(pct(o.Handover, 0.99)), "ours-handover-p99-ms")
	b.ReportMetric(benchtest.Millis(pct(c.Handover, 0.99)), "clientgo-handover-p99-ms")
	b.ReportMetric(o.PerMinute, "ours-req/min")
	b.ReportMetric(c.PerMinute, "clientgo-req/min")

	var t strings.Builder
	fmt.Fprintf(&t, "LeaseDuration %v, RenewDeadline %v, RetryPeriod %v; %d candidates (1 leader + %d followers); %d hand-overs, %d crashes each.\n\n",
		timing.LeaseDuration, timing.RenewDeadline, timing.RetryPeriod, *candidates, *candidates-1, *handovers, *crashes)
	fmt.Fprintf(&t, "| metric | leaderelection | client-go | client-go ÷ ours |\n|---|---:|---:|---:|\n")
	row := func(name string, ov, cv time.Duration) {
		fmt.Fprintf(&t, "| %s | %s | %s | %s |\n", name, ms(ov), ms(cv), benchtest.Ratio(float64(cv), float64(ov)))
	}
	row("graceful hand-over p50", pct(o.Handover, 0.5), pct(c.Handover, 0.5))
	row("graceful hand-over p99", pct(o.Handover, 0.99), pct(c.Handover, 0.99))
	row("crash fail-over − LeaseDuration p50", pct(o.Failover, 0.5), pct(c.Failover, 0.5))
	row("crash fail-over − LeaseDuration p99", pct(o.Failover, 0.99), pct(c.Failover, 0.99))
	fmt.Fprintf(&t, "| API requests/min, 1 leader + %d followers | %.1f (%s) | %.1f (%s) | %s |\n",
		*candidates-1, o.PerMinute, benchtest.PerMinute(o.Requests, *window), c.PerMinute, benchtest.PerMinute(c.Requests, *window), benchtest.Ratio(c.PerMinute, o.PerMinute))
	fmt.Println()
	fmt.Println(t.String())
}
