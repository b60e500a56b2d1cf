package gossip

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
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
	c := newCluster(t, 3, false, fastReinit)
	followers := []string{"f1", "f2", "f3"}
	for _, id := range followers {
		c.start(id, nil)
	}
	c.waitMembers(6)
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
