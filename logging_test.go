package leaderelection

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
)

// logLines captures one candidate's log lines at verbosity 0.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) logger() *logr.Logger {
	lg := funcr.New(func(prefix, args string) {
		l.mu.Lock()
		l.lines = append(l.lines, prefix+" "+args)
		l.mu.Unlock()
	}, funcr.Options{})
	return &lg
}

// count returns how many lines contain every one of subs.
func (l *logLines) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, line := range l.lines {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		n++
	}
	return n
}

// A follower logs each new leader once, as client-go does, not at every
// renewal it reads.
func TestFollowerLogsEachNewLeaderOnce(t *testing.T) {
	el := newElection(t)
	a := el.add("a", nil)
	el.stepUntilLeads(t, a, 2*testLease, "a alone")
	var logs logLines
	el.add("b", func(c *Config) { c.Logger = logs.logger() })
	for i := 0; i < 10; i++ {
		el.step(t, testRetry)
	}
	if n := logs.count(`"msg"="New leader"`, `"leader"="a"`); n != 1 {
		t.Fatalf("the follower logged the leader a %d times over 10 renewals, want once:\n%s", n, strings.Join(logs.lines, "\n"))
	}
}

// A corrupt record is an error logged once per repeatEvery while it lasts,
// not at every retry (every RetryPeriod), which flooded the logs.
func TestCorruptRecordIsLoggedOncePerMinute(t *testing.T) {
	el := newElection(t)
	el.store.SetRaw([]byte("garbage"))
	var logs logLines
	el.add("a", func(c *Config) { c.Logger = logs.logger() })
	for el.clk.Since(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) < repeatEvery/2 {
		el.step(t, testRetry)
	}
	if n := logs.count("record is corrupt", "delete"); n != 1 {
		t.Fatalf("logged the corrupt record %d times in %v of retries every %v, want once:\n%s", n, repeatEvery/2, testRetry, strings.Join(logs.lines, "\n"))
	}
	for el.clk.Since(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) < repeatEvery*3/2 {
		el.step(t, testRetry)
	}
	if n := logs.count("record is corrupt", "delete"); n != 2 {
		t.Fatalf("logged the corrupt record %d times in %v, want twice (once per %v):\n%s", n, repeatEvery*3/2, repeatEvery, strings.Join(logs.lines, "\n"))
	}
}
