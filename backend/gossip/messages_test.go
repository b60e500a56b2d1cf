package gossip

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/lock"
)

// sentBy returns how many messages of each kind l has sent.
func sentBy(l *Lock) map[string]float64 {
	out := map[string]float64{}
	for _, k := range kindNames[1:] {
		out[k] = testutil.ToFloat64(l.m.sent.WithLabelValues(k))
	}
	return out
}

func TestFollowersSendNothingWhileTheLeaderRenews(t *testing.T) {
	c := threeVotersAndFollowers(t)
	followers := []string{"f1", "f2", "f3"}
	el := newElection(c, testDurations)
	all := append(append([]string(nil), c.voters...), followers...)
	for _, id := range all {
		el.run(id)
	}
	lead := el.leaderAmong(all, 30*time.Second)
	// Let the followers settle (their first reads, the first pushes).
	observe(testDurations.LeaseDuration)
	before := map[string]map[string]float64{}
	for _, id := range all {
		before[id] = sentBy(c.lock(id))
	}
	renewals := 4
	observe(time.Duration(renewals) * testDurations.RetryPeriod)
	for _, tm := range el.tr.Terms() {
		if tm.Term != lead.Term {
			t.Fatalf("leadership changed during the window (%s term %d); the counts mean nothing", tm.ID, tm.Term)
		}
	}
	for _, id := range all {
		after := sentBy(c.lock(id))
		d := map[string]float64{}
		total := 0.0
		for k, v := range after {
			if v-before[id][k] > 0 {
				d[k] = v - before[id][k]
				total += d[k]
			}
		}
		if id == lead.ID {
			t.Logf("leader %s sent %v over about %d renewals (%.1f per renewal)", id, d, renewals, total/float64(renewals))
			continue
		}
		t.Logf("%s sent %v", id, d)
		for k := range d {
			if k == "prepare" || k == "accept" || k == "push" {
				t.Errorf("follower %s sent %v %s messages of its own while %s renewed", id, d[k], k, lead.ID)
			}
		}
	}
}

// A graceful hand-over is two round trips apart from the push: the
// release's accepts also prepare the take-over round of the candidate
// whose turn is first, and the release's push hands that prepare phase to
// it, so its take-over sends accepts and no prepare. The leader here is a
// non-voter (a voter leaves its own acceptor out of a hand-over, which
// usually leaves too few), and every member campaigns, so whoever is first
// in turn takes over.
//
// Under load a hand-over may go unused (another candidate went first: the
// heir's goroutines did not run within the turn step): the cluster is set
// up afresh up to three times, and one hand-over taken without a prepare
// phase is the proof. With the hand-over broken none ever is. The heir's
// reading is not such a case: the release comes after every candidate's
// first read, once the clock has passed their ballots.
func TestHandOverTakesOverWithoutAPreparePhase(t *testing.T) {
	for attempt := 1; attempt <= 3; attempt++ {
		if handOverOnce(t) {
			return
		}
	}
	t.Fatal("in three hand-overs, the release's prepare phase was never handed over: every take-over sent prepares")
}

func handOverOnce(t *testing.T) bool {
	c := threeVotersAndFollowers(t)
	// A released record to start from: with no record the first candidate
	// would claim it for a lease (an hour) first.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.lock("v1").Create(ctx, lock.Record{LeaderTransitions: 1}); err != nil {
		t.Fatal(err)
	}
	el := newElection(c, leaderelection.Config{LeaseDuration: time.Hour, RenewDeadline: 10 * time.Second, RetryPeriod: time.Second})
	cands := map[string]*candidate{"f1": el.run("f1")}
	el.leaderAmong([]string{"f1"}, 30*time.Second)
	rest := append([]string{"f2", "f3"}, c.voters...)
	for _, id := range rest {
		cands[id] = el.run(id)
	}
	el.settledOn("f1", rest)
	before := map[string]map[string]float64{}
	for _, id := range rest {
		before[id] = sentBy(c.lock(id))
	}
	cands["f1"].stop(t) // releases; the lease is an hour, so only the release moves leadership
	next := el.leaderAmong(rest, 30*time.Second)
	after := sentBy(c.lock(next.ID))
	prepares := after["prepare"] - before[next.ID]["prepare"]
	accepts := after["accept"] - before[next.ID]["accept"]
	t.Logf("%s took over term %d, sending %v prepares and %v accepts", next.ID, next.Term, prepares, accepts)
	for _, cd := range cands {
		if cd != cands["f1"] {
			cd.stop(t)
		}
	}
	return prepares == 0 && accepts > 0
}
