package casp

import (
	"testing"
	"time"
)

// The stall rule: a full round that one voter refused for a higher ballot,
// with another voter silent, is replaced (unless its caller watches every
// reply); weakened to the simulation's old rule, it waits.
func TestStallRuleReplacesARefusedRound(t *testing.T) {
	voters := []string{"a", "b", "c"}
	c := newCluster(t, voters...)
	q := newProposer(t, "q", 2, voters)
	p := newProposer(t, "p", 1, voters)
	// q's prepare reaches b alone: b promises a ballot above p's.
	rq := q.Start(100, Read)
	if reply, err := c.acc["b"].Handle(0, rq.Prepares()[1]); err != nil || reply == nil || reply.Kind != KindPromise {
		t.Fatalf("b's answer to q: %+v, %v", reply, err)
	}
	r := p.Start(0, Create([]byte("x")))
	if r.Replace(false) {
		t.Fatal("a round nobody answered yet is replaced")
	}
	for _, m := range r.Prepares()[:2] { // c is down
		reply, err := c.acc[m.To].Handle(0, m)
		if err != nil || reply == nil {
			t.Fatalf("%s's answer: %+v, %v", m.To, reply, err)
		}
		if _, err := r.Handle(*reply); err != nil {
			t.Fatal(err)
		}
	}
	if o := r.Outcome(); o.Status != Pending || !r.Ballot().Less(o.Seen) {
		t.Fatalf("promised by a, refused by b for %s: %+v; want pending, a higher ballot seen", rq.Ballot(), o)
	}
	if !r.Replace(false) {
		t.Error("a round refused for a higher ballot, waiting for a silent voter, is not replaced")
	}
	if r.Replace(true) {
		t.Error("a watched round (a recovery's) is replaced")
	}
	p.weakStall = true
	if r.Replace(false) {
		t.Error("the weakened rule replaces a round that did not skip its prepare phase")
	}
	p.weakStall = false
	r.Abandon()
	if r.Replace(false) {
		t.Error("an abandoned round is replaced")
	}
}

func TestRetryPauseDoublesWithinItsBounds(t *testing.T) {
	for _, c := range []struct{ last, took, want time.Duration }{
		{0, 0, time.Millisecond},
		{0, 10 * time.Millisecond, 20 * time.Millisecond},
		{20 * time.Millisecond, 5 * time.Millisecond, 40 * time.Millisecond},
		{time.Second, time.Millisecond, 2 * time.Second},
		{0, 5 * time.Second, 2 * time.Second},
	} {
		if got := RetryPause(c.last, c.took); got != c.want {
			t.Errorf("RetryPause(%v, %v) = %v, want %v", c.last, c.took, got, c.want)
		}
	}
}
