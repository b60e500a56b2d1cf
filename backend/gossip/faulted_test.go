package gossip

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	leaderelection "github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/lock/electiontest"
)

// The full faulted run (docs/backends/gossip.md):
//
//	go test -run TestFaultedElection -timeout 2h ./backend/gossip/ -gossip.transitions=1000 -gossip.report=/tmp/gossip-faulted.md
var (
	transitions = flag.Int("gossip.transitions", 12, "leadership transitions in TestFaultedElection (CI runs the default; the documented run uses 1000)")
	reportFile  = flag.String("gossip.report", "", "if set, TestFaultedElection writes its figures to this file")
)

// faultDurations are short, for many transitions: the elector's minimum
// retry period, a lease of two.
var faultDurations = leaderelection.Config{LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: time.Second}

type transition struct {
	fault    string
	from, to string
	term     int64
	takeover time.Duration
}

// TestFaultedElection makes the leader of a five-voter election (StateDirs,
// every voter a candidate) lose its lease again and again, by a graceful
// hand-over, a crash and restart, a partition that isolates it, or a pause
// (all its traffic held) longer than the lease, and records each takeover.
// The tracker fails the test if two candidates ever lead at once or a term
// does not increase.
func TestFaultedElection(t *testing.T) {
	c := newCluster(t, 5, true, nil)
	el := newElection(c, faultDurations)
	for _, v := range c.voters {
		el.run(v)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	faults := []string{"release", "release", "crash", "partition", "pause"}
	var log []transition
	deadline := time.Now().Add(time.Duration(*transitions) * 20 * time.Second)
	cur := el.leaderAmong(c.voters, 30*time.Second)
	for len(log) < *transitions {
		if time.Now().After(deadline) {
			t.Fatalf("only %d transitions before the deadline", len(log))
		}
		fault := faults[rng.IntN(len(faults))]
		id := cur.ID
		el.mu.Lock()
		cand := el.cands[id]
		el.mu.Unlock()
		rest := others(c.voters, id)
		at := time.Now()
		var heal func()
		switch fault {
		case "release":
			cand.stop(t)
			heal = func() { el.run(id) }
		case "crash":
			c.crash(id)
			cand.stop(t)
			heal = func() { c.start(id, nil); el.run(id) }
		case "partition":
			c.net.Isolate(id, c.voters)
			heal = func() {
				c.net.Heal()
				// Its elector returned ErrLeaseLost, as RunOrDie would
				// exit: a supervisor starts the process again.
				cand.stop(t)
				el.run(id)
			}
		case "pause":
			resume := c.net.Pause(id, c.voters)
			// Held for longer than the lease, then delivered, stale.
			heal = func() {
				observe(faultDurations.LeaseDuration + time.Second - time.Since(at))
				resume()
				cand.stop(t)
				el.run(id)
			}
		}
		next := el.leaderAmong(rest, faultDurations.LeaseDuration+30*time.Second)
		log = append(log, transition{fault: fault, from: id, to: next.ID, term: next.Term, takeover: next.Start.Sub(at)})
		heal()
		cur = next
		if len(log)%50 == 0 {
			t.Logf("%d transitions", len(log))
		}
	}
	report := summarise(log, el.tr.Terms())
	t.Log("\n" + report)
	if *reportFile != "" {
		if err := os.WriteFile(*reportFile, []byte(report), 0o644); err != nil {
			t.Error(err)
		}
	}
}

// summarise returns the run's figures as a Markdown table.
func summarise(log []transition, terms []electiontest.Term) string {
	by := map[string][]time.Duration{}
	for _, tr := range log {
		by[tr.fault] = append(by[tr.fault], tr.takeover)
	}
	kinds := make([]string, 0, len(by))
	for k := range by {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	var b strings.Builder
	fmt.Fprintf(&b, "%d transitions, %d terms, lease %v, renew deadline %v, retry %v\n\n", len(log), len(terms),
		faultDurations.LeaseDuration, faultDurations.RenewDeadline, faultDurations.RetryPeriod)
	fmt.Fprintln(&b, "| fault | transitions | takeover p50 | p99 | max |")
	fmt.Fprintln(&b, "|---|---|---|---|---|")
	for _, k := range kinds {
		d := by[k]
		slices.Sort(d)
		fmt.Fprintf(&b, "| %s | %d | %v | %v | %v |\n", k, len(d), pct(d, 50), pct(d, 99), d[len(d)-1].Round(time.Millisecond))
	}
	return b.String()
}

func pct(d []time.Duration, p int) time.Duration {
	i := (len(d)*p + 99) / 100
	return d[max(0, min(len(d)-1, i-1))].Round(time.Millisecond)
}
