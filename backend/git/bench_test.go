package git_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// BenchmarkRenew times a leader's renewal (one Update from the commit it
// wrote) against real git on loopback, per transport, and reports the
// median and 99th percentile.
//
//	go test -run '^$' -bench Renew/ -benchtime 500x ./backend/git/
func BenchmarkRenew(b *testing.B) {
	for _, tr := range benchTransports {
		b.Run(tr.name, func(b *testing.B) {
			h := tr.h(b)
			ctx := context.Background()
			l := h.newLock(b, "bench", "a")
			rec := locktest.NewRecord("a", 1)
			if err := l.Create(ctx, rec); err != nil {
				b.Fatal(err)
			}
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				rec.RenewTime.Time = rec.RenewTime.Add(time.Second)
				start := time.Now()
				if err := l.Update(ctx, rec); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			reportPercentiles(b, took)
		})
	}
}

// BenchmarkFollowerGet times a follower's poll after each renewal (the
// record changed, so it lists the branch and fetches one commit).
//
//	go test -run '^$' -bench FollowerGet -benchtime 300x ./backend/git/
func BenchmarkFollowerGet(b *testing.B) {
	for _, tr := range benchTransports {
		b.Run(tr.name, func(b *testing.B) {
			h := tr.h(b)
			ctx := context.Background()
			leader, follower := h.newLock(b, "bench", "a"), h.newLock(b, "bench", "b")
			rec := locktest.NewRecord("a", 1)
			if err := leader.Create(ctx, rec); err != nil {
				b.Fatal(err)
			}
			took := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				b.StopTimer()
				rec.RenewTime.Time = rec.RenewTime.Add(time.Second)
				if err := leader.Update(ctx, rec); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				if _, _, err := follower.Get(ctx); err != nil {
					b.Fatal(err)
				}
				took = append(took, time.Since(start))
			}
			b.StopTimer()
			reportPercentiles(b, took)
		})
	}
}

var benchTransports = []struct {
	name string
	h    func(testing.TB) *harness
}{
	{"smart-http", func(t testing.TB) *harness { return newHTTPHarness(t, testserver.GitHTTPAuth{}, nil).harness }},
	{"git-daemon", func(t testing.TB) *harness { return newDaemonHarness(t).harness }},
	{"ssh", func(t testing.TB) *harness { return newSSHHarness(t, false).harness }},
	{"local-path", newLocalHarness},
}

func reportPercentiles(b *testing.B, took []time.Duration) {
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkRepositoryGrowth renews 10,000 times (LE_GIT_GROWTH_RENEWALS to
// change) against git http-backend and reports what the bare repository
// holds before and after `git gc --prune=now`. It takes minutes, so it runs
// only when asked for:
//
//	go test -run '^$' -bench RepositoryGrowth -benchtime 1x ./backend/git/
func BenchmarkRepositoryGrowth(b *testing.B) {
	renewals := 10000
	if s := os.Getenv("LE_GIT_GROWTH_RENEWALS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("LE_GIT_GROWTH_RENEWALS=%q: want a positive number", s)
		}
		renewals = n
	}
	for range b.N {
		h := newHTTPHarness(b, testserver.GitHTTPAuth{}, nil).harness
		ctx := context.Background()
		l := h.newLock(b, "growth", "a")
		rec := locktest.NewRecord("a", 1)
		if err := l.Create(ctx, rec); err != nil {
			b.Fatal(err)
		}
		startKB := diskKB(b, h.repo.Dir)
		for i := range renewals {
			rec.RenewTime.Time = rec.RenewTime.Add(time.Second)
			if err := l.Update(ctx, rec); err != nil {
				b.Fatalf("renewal %d: %v", i, err)
			}
		}
		beforeKB, loose := diskKB(b, h.repo.Dir), countLoose(b, h.repo.Dir)
		reachable := h.repo.Git(b, "rev-list", "--objects", "--all", "--count")
		commits := h.repo.Git(b, "rev-list", "--count", branch("growth"))
		h.repo.Git(b, "gc", "--quiet", "--prune=now")
		afterKB := diskKB(b, h.repo.Dir)
		b.ReportMetric(float64(renewals), "renewals")
		b.ReportMetric(float64(startKB), "KB-at-start")
		b.ReportMetric(float64(beforeKB), "KB-before-gc")
		b.ReportMetric(float64(loose), "loose-objects-before-gc")
		b.ReportMetric(float64(afterKB), "KB-after-gc")
		b.Logf("%d renewals: repository %d KB at start, %d KB (%d loose objects) before gc, %d KB after gc --prune=now; branch commits %s, reachable objects %s",
			renewals, startKB, beforeKB, loose, afterKB, commits, reachable)
	}
}

// diskKB is the disk usage of dir (du -sk), counting each loose object's
// whole file-system block as the server pays for it.
func diskKB(b *testing.B, dir string) int {
	b.Helper()
	out, err := exec.Command("du", "-sk", dir).Output()
	if err != nil {
		b.Fatalf("du: %v", err)
	}
	kb, err := strconv.Atoi(strings.Fields(string(out))[0])
	if err != nil {
		b.Fatal(err)
	}
	return kb
}

func countLoose(b *testing.B, dir string) int {
	b.Helper()
	matches, err := filepath.Glob(filepath.Join(dir, "objects", "[0-9a-f][0-9a-f]", "*"))
	if err != nil {
		b.Fatal(err)
	}
	return len(matches)
}
