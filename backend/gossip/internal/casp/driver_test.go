package casp

import (
	"slices"
	"testing"
	"time"
)

func to(ms []Message) []string {
	var names []string
	for _, m := range ms {
		names = append(names, m.To)
	}
	return names
}

// The driver's schedule: unanswered messages go again after resend, then
// doubling up to four times resend; a stalled round is abandoned and a
// full round above it replaces it, and the schedule goes on.
func TestDriverResendsAndReplaces(t *testing.T) {
	voters := []string{"a", "b", "c"}
	c := newCluster(t, voters...)
	q := newProposer(t, "q", 2, voters)
	p := newProposer(t, "p", 1, voters)
	const resend = 100 * time.Millisecond
	starts := 0
	d := NewDriver(func() *Round { starts++; return p.Start(0, Create([]byte("x"))) }, resend, false)
	t0 := time.Unix(1000, 0)
	first := d.Start(t0)
	if !slices.Equal(to(first), voters) || first[0].Kind != KindPrepare || starts != 1 {
		t.Fatalf("Start sent %v (%v), %d rounds started; want prepares to every voter, one round", to(first), first[0].Kind, starts)
	}
	if got := d.Next(); !got.Equal(t0.Add(resend)) {
		t.Fatalf("first tick at %v, want %v", got.Sub(t0), resend)
	}
	// a promises; b and c are silent.
	reply, err := c.acc["a"].Handle(0, first[0])
	if err != nil || reply == nil {
		t.Fatalf("a's answer: %+v, %v", reply, err)
	}
	if send, out, err := d.Handle(*reply); err != nil || len(send) != 0 || out.Status != Pending || d.Done() {
		t.Fatalf("after a's promise: send %v, %+v, %v, done %v", to(send), out, err, d.Done())
	}
	if send, abandoned := d.Tick(t0.Add(resend - time.Millisecond)); send != nil || abandoned != nil {
		t.Fatalf("a tick before it is due sent %v", to(send))
	}
	// The schedule: resend, then 2x, then 4x, 4x.
	at := t0
	for i, gap := range []time.Duration{resend, 2 * resend, 4 * resend, 4 * resend} {
		at = at.Add(gap)
		if !d.Next().Equal(at) {
			t.Fatalf("tick %d due at %v, want %v", i, d.Next().Sub(t0), at.Sub(t0))
		}
		send, abandoned := d.Tick(at)
		if abandoned != nil || !slices.Equal(to(send), []string{"b", "c"}) {
			t.Fatalf("tick %d: sent %v, abandoned %v; want the unanswered prepares to b and c", i, to(send), abandoned)
		}
	}
	// b's answer to a resent prepare: a refusal for q's higher ballot.
	// With c silent the round cannot finish by waiting: the next tick
	// replaces it.
	rq := q.Start(1_000_000, Read)
	if reply, err := c.acc["b"].Handle(0, rq.Prepares()[1]); err != nil || reply == nil || reply.Kind != KindPromise {
		t.Fatalf("b's answer to q: %+v, %v", reply, err)
	}
	old := d.Round()
	reply, err = c.acc["b"].Handle(0, first[1])
	if err != nil || reply == nil || reply.Kind != KindNack {
		t.Fatalf("b's answer: %+v, %v", reply, err)
	}
	if _, out, err := d.Handle(*reply); err != nil || out.Status != Pending {
		t.Fatalf("after b's refusal: %+v, %v", out, err)
	}
	at = at.Add(4 * resend)
	send, abandoned := d.Tick(at)
	if abandoned != old || abandoned.Outcome().Status != Failed {
		t.Fatalf("the stalled round was not abandoned: %v", abandoned)
	}
	if starts != 2 || !slices.Equal(to(send), voters) || send[0].Kind != KindPrepare || !rq.Ballot().Less(d.Round().Ballot()) {
		t.Fatalf("replacement: %d rounds started, sent %v at %s; want prepares to every voter above %s", starts, to(send), d.Round().Ballot(), rq.Ballot())
	}
	if !d.Next().Equal(at.Add(4 * resend)) {
		t.Fatalf("the tick after a replacement is due at %v, want %v", d.Next().Sub(at), 4*resend)
	}
	// a and b promise the new round: it sends its accepts to them.
	var accepts []Message
	for _, m := range send[:2] {
		reply, err := c.acc[m.To].Handle(0, m)
		if err != nil || reply == nil || reply.Kind != KindPromise {
			t.Fatalf("%s's answer: %+v, %v", m.To, reply, err)
		}
		next, _, err := d.Handle(*reply)
		if err != nil {
			t.Fatal(err)
		}
		accepts = append(accepts, next...)
	}
	if !slices.Equal(to(accepts), []string{"a", "b"}) || d.Phase() != KindAccept || !d.WriteSent() {
		t.Fatalf("accepts to %v, phase %v, write sent %v", to(accepts), d.Phase(), d.WriteSent())
	}
	// b accepts; a's acceptance is lost: the tick resends a's accept only.
	reply, err = c.acc["b"].Handle(0, accepts[1])
	if err != nil || reply == nil {
		t.Fatal(reply, err)
	}
	if _, _, err := d.Handle(*reply); err != nil {
		t.Fatal(err)
	}
	at = at.Add(4 * resend)
	if send, abandoned := d.Tick(at); abandoned != nil || !slices.Equal(to(send), []string{"a"}) || send[0].Kind != KindAccept {
		t.Fatalf("tick in the accept phase: sent %v, abandoned %v; want a's accept", to(send), abandoned)
	}
	reply, err = c.acc["a"].Handle(0, accepts[0])
	if err != nil || reply == nil {
		t.Fatal(reply, err)
	}
	if _, out, err := d.Handle(*reply); err != nil || out.Status != Chosen || !out.Wrote || !d.Done() {
		t.Fatalf("after a's acceptance: %+v, %v, done %v", out, err, d.Done())
	}
}
