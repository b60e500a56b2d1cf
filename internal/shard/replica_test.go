package shard

import (
	"fmt"
	"testing"
)

// script drives replicas by hand: each read gets the next read counter.
type script struct {
	t   *testing.T
	now uint64
}

func (sc *script) read(sl Slot) Slot {
	sc.now++
	sl.ReadAt = sc.now
	return sl
}

func (sc *script) held(m Member, a Ack) Slot { return sc.read(Slot{State: Held, Member: m, Ack: a}) }

func (sc *script) observe(r *Replica, v *View) []Action {
	sc.t.Helper()
	v.Now = sc.now
	acts, err := r.Observe(*v)
	if err != nil {
		sc.t.Fatal(err)
	}
	return acts
}

func find[T Action](acts []Action) (T, bool) {
	for _, a := range acts {
		if t, ok := a.(T); ok {
			return t, true
		}
	}
	var zero T
	return zero, false
}

func starts(acts []Action, shard int) bool {
	for _, a := range acts {
		if s, ok := a.(Start); ok && s.Shard == shard {
			return true
		}
	}
	return false
}

// handOver runs the scenario the two tests below share: y alone runs
// shards 0 and 1 under generation 1; x joins slot 1 and writes generation
// 2, which moves one shard (moved) to x. It returns y's view (whose read of
// slot 1 is from before x joined), generation 2, and y's actions on first
// seeing it.
func handOver(sc *script, y *Replica) (View, Assignment, int, []Action) {
	t := sc.t
	t.Helper()
	stale := sc.read(Slot{State: Free})
	v := View{Slots: []Slot{sc.held(y.self, Ack{}), stale}}
	w, ok := find[WriteAssignment](sc.observe(y, &v))
	if !ok {
		t.Fatal("y alone proposes no assignment")
	}
	a1 := w.Assignment
	v.Assignment = &a1
	sc.observe(y, &v) // acks a1
	v.Slots[0] = sc.held(y.self, a1.Ack())
	v.Slots[1] = sc.read(Slot{State: Free})
	if acts := sc.observe(y, &v); !starts(acts, 0) || !starts(acts, 1) {
		t.Fatalf("y does not start both shards: %v", acts)
	}
	x := NewReplica(Member{Slot: 1, ID: "x"}, 2, 1)
	xv := View{Assignment: &a1, Slots: []Slot{sc.held(y.self, a1.Ack()), sc.held(x.self, Ack{Generation: 1})}}
	w, ok = find[WriteAssignment](sc.observe(x, &xv))
	if !ok {
		t.Fatal("the joiner proposes no assignment")
	}
	a2 := w.Assignment
	moved := a2.Shards(x.self)[0]
	v.Assignment = &a2
	v.Slots[1] = stale // y's watch of slot 1 lags behind
	return v, a2, moved, sc.observe(y, &v)
}

// TestAckWaitsForTheRevokedFunctionToReturn: a replica acknowledges the
// generation that takes a shard away only once that shard's function has
// returned, so the new owner cannot start it before. Weakened (ack once
// cancelled), the acknowledgement comes at once.
func TestAckWaitsForTheRevokedFunctionToReturn(t *testing.T) {
	for _, weak := range []bool{false, true} {
		t.Run(fmt.Sprint("weakened=", weak), func(t *testing.T) {
			sc := &script{t: t}
			y := NewReplica(Member{Slot: 0, ID: "y"}, 2, 0)
			y.weak.ackBeforeReturn = weak
			_, a2, moved, acts := handOver(sc, y)
			if _, ok := find[Stop](acts); !ok {
				t.Fatalf("y does not stop shard %d: %v", moved, acts)
			}
			_, acked := find[WriteAck](acts)
			if weak {
				if !acked {
					t.Fatal("weakened rule: no early ack; the test cannot see the rule's absence")
				}
				return
			}
			if acked {
				t.Fatalf("y acked %v before shard %d's function returned", a2.Ack(), moved)
			}
			y.Returned(moved)
			v := View{Assignment: &a2, Slots: []Slot{sc.held(y.self, Ack{}), sc.read(Slot{State: Free})}}
			if w, ok := find[WriteAck](sc.observe(y, &v)); !ok || w.Ack != a2.Ack() {
				t.Fatalf("y does not ack %v once the function returned", a2.Ack())
			}
		})
	}
}

// TestBarrierCountsOnlySlotReadsIssuedAfterTheAck: y's watch of slot 1 lags
// and still shows it free after x joined it and started a shard; y, seeing
// itself alone, writes generation 3 that takes the shard back. The barrier
// must wait for a read of slot 1 issued after y's ack, which shows x still
// on generation 2. Weakened (any read counts), y starts the shard beside x.
func TestBarrierCountsOnlySlotReadsIssuedAfterTheAck(t *testing.T) {
	for _, weak := range []bool{false, true} {
		t.Run(fmt.Sprint("weakened=", weak), func(t *testing.T) {
			sc := &script{t: t}
			y := NewReplica(Member{Slot: 0, ID: "y"}, 2, 0)
			y.weak.staleBarrier = weak
			v, a2, moved, _ := handOver(sc, y)
			y.Returned(moved)
			sc.observe(y, &v) // acks a2; x then acks and starts the shard
			v.Slots[0] = sc.held(y.self, a2.Ack())
			w, ok := find[WriteAssignment](sc.observe(y, &v))
			if !ok {
				t.Fatal("y, seeing slot 1 free, proposes no assignment without x")
			}
			a3 := w.Assignment
			v.Assignment = &a3
			sc.observe(y, &v) // acks a3
			v.Slots[0] = sc.held(y.self, a3.Ack())
			started := starts(sc.observe(y, &v), moved)
			if weak {
				if !started {
					t.Fatal("weakened rule: y does not start the shard; the test cannot see the rule's absence")
				}
				return
			}
			if started {
				t.Fatalf("y started shard %d on a read of slot 1 from before its ack, while x runs it", moved)
			}
			v.Slots[1] = sc.held(Member{Slot: 1, ID: "x"}, a2.Ack())
			if acts := sc.observe(y, &v); starts(acts, moved) {
				t.Fatalf("y started shard %d while x, on generation 2, runs it", moved)
			}
		})
	}
}
