package gossip

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// A follower that memberlist declared dead while a write was pushed (a
// paused or starved process misses its probes; here its links are cut)
// gets the write once it is re-admitted: pushes go only to the members
// memberlist shows alive, and the writer sends its last write again to a
// member that comes alive, so the follower's watcher wakes on it instead
// of on its own timers. f reads nothing meanwhile, so only a push can
// bring it the write.
func TestFollowerReadmittedAfterAMissedPushGetsTheWrite(t *testing.T) {
	c, w, ctx := threeVotersAnd(t, "w")
	f := c.start("f", nil)
	c.waitMembers(5)
	got := make(chan casp.Ballot, 64)
	hook := func(e *envelope) {
		select {
		case got <- e.Ballot:
		default:
		}
	}
	f.pushed.Store(&hook)
	if err := w.Create(ctx, locktest.NewRecord("w", 1)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	c.waitAlive("w", "f", 10*time.Second)

	c.net.Isolate("f", []string{"v1", "v2", "v3", "w"})
	poll.Until(t, "w's memberlist to declare f dead", time.Minute, func() bool {
		w.tr.mu.Lock()
		defer w.tr.mu.Unlock()
		return w.tr.alive["f"] == ""
	})
	rec, _, err := w.Get(ctx)
	if err != nil {
		t.Fatalf("Get: %v", err)
	}
	rec.RenewTime = metav1.NewTime(rec.RenewTime.Add(time.Second))
	if err := w.Update(ctx, *rec); err != nil {
		t.Fatalf("Update while f is counted dead: %v", err)
	}
	w.mu.Lock()
	written := w.latest.Written
	w.mu.Unlock()
	for len(got) > 0 {
		if b := <-got; b == written {
			t.Fatal("f got the write's push while cut off: the test cut nothing")
		}
	}

	c.net.Heal()
	deadline := time.After(time.Minute)
	for {
		select {
		case b := <-got:
			if b == written {
				return
			}
		case <-deadline:
			t.Fatalf("f, re-admitted, was not pushed w's write %s within a minute", written)
		}
	}
}
