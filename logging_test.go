package leaderelection

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/b3df926d/leaderelection/lock"
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

// A leader that steps down says why: here the record turned corrupt, so
// its renewals fail until RenewDeadline, and the step-down names the
// corruption and the object to delete (before, it said only that it could
// not renew).
func TestLeaderSteppingDownOverACorruptRecordSaysWhy(t *testing.T) {
	el := newElection(t)
	var logs logLines
	a := el.add("a", func(c *Config) { c.Logger = logs.logger() })
	el.stepUntilLeads(t, a, 2*testLease, "a alone")
	el.store.SetRaw([]byte("garbage"))
	for i := 0; i < 10 && a.e.IsLeader(); i++ {
		el.step(t, testRetry)
	}
	if a.e.IsLeader() {
		t.Fatal("a still leads over a corrupt record after 10 retries")
	}
	waitFor(t, "a's step-down logged", func() bool { return logs.count(`"msg"="Stepped down`) > 0 })
	if n := logs.count(`"msg"="Stepped down`, "corrupt", `"delete"=`); n != 1 {
		t.Fatalf("the step-down over a corrupt record is logged %d times with its reason and the object to delete, want once:\n%s", n, strings.Join(logs.lines, "\n"))
	}
	// Run's error, the exit message of a process, says it too.
	var err error
	for i := 0; ; i++ {
		select {
		case err = <-a.done:
			a.done <- err // for the cleanup
		default:
			if i == 10 {
				t.Fatal("Run did not return after the lost term")
			}
			el.step(t, testRetry)
			continue
		}
		break
	}
	if !errors.Is(err, ErrLeaseLost) || !errors.Is(err, lock.ErrCorrupt) || !strings.Contains(err.Error(), "delete") {
		t.Fatalf("Run = %v, want ErrLeaseLost and lock.ErrCorrupt, naming what to delete", err)
	}
}

// A leader that another candidate displaced says so when it steps down.
func TestLeaderDisplacedSaysWhy(t *testing.T) {
	el := newElection(t)
	var logs logLines
	a := el.add("a", func(c *Config) { c.Logger = logs.logger() })
	el.stepUntilLeads(t, a, 2*testLease, "a alone")
	x := el.store.Lock("x")
	rec, _, err := x.Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	rec.HolderIdentity, rec.LeaderTransitions = "x", rec.LeaderTransitions+1
	if err := x.Update(context.Background(), *rec); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10 && a.e.IsLeader(); i++ {
		el.step(t, testRetry)
	}
	waitFor(t, "a's step-down logged", func() bool { return logs.count(`"msg"="Stepped down`) > 0 })
	if n := logs.count(`"msg"="Stepped down"`, `"reason"="another candidate holds the lock"`); n != 1 {
		t.Fatalf("the displaced leader's step-down is logged %d times with its reason, want once:\n%s", n, strings.Join(logs.lines, "\n"))
	}
}
