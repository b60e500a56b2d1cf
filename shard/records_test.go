package shard

import (
	"reflect"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	core "github.com/b3df926d/leaderelection/internal/shard"
	"github.com/b3df926d/leaderelection/lock"
)

// TestRecordsRoundTrip: what a replica writes reads back as the core's
// values, whatever the identity holds (the separator included).
func TestRecordsRoundTrip(t *testing.T) {
	now := metav1.NewTime(time.Unix(1700000000, 0))
	for _, id := range []string{"a", "pod-7#x", "ns/name#0123", ""} {
		ack := core.Ack{Generation: 42, Digest: 0xfedcba9876543210}
		rec := heldRecord(id, ack, 15*time.Second, now, now)
		want := core.Slot{State: core.Held, Member: core.Member{Slot: 3, ID: id}, Ack: ack}
		if got := decodeSlot(&rec, 3); got != want {
			t.Errorf("identity %q: decoded %+v, want %+v", id, got, want)
		}
		if lock.IsClaim(rec) {
			t.Errorf("a held slot must not read as a claim: %+v", rec)
		}
	}
	free := freeRecord(7, now.Time)
	if got := decodeSlot(&free, 1); got != (core.Slot{State: core.Free, Ack: core.Ack{Generation: 7}}) {
		t.Errorf("free slot decoded as %+v", got)
	}
	// A holder this package did not write: held, with an acknowledgement
	// that matches no assignment, so it blocks every barrier.
	foreign := lock.Record{HolderIdentity: "someone", LeaderTransitions: 3}
	if got := decodeSlot(&foreign, 0); got.State != core.Held || got.Member.ID != "someone" || got.Ack.Digest != 0 {
		t.Errorf("foreign holder decoded as %+v", got)
	}

	ms, owners := core.Assign(core.Assignment{}, []core.Member{{Slot: 0, ID: "a"}, {Slot: 4, ID: `b "quoted", with commas`}, {Slot: 63, ID: "c"}}, 100)
	a := core.Assignment{Generation: 9, Members: ms, Owners: owners}
	rec, err := assignmentRecord(a, now.Time)
	if err != nil {
		t.Fatal(err)
	}
	got, err := decodeAssignment(&rec)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, a) || got.Ack() != a.Ack() {
		t.Errorf("assignment round trip: got %+v, want %+v", *got, a)
	}
	// One byte per shard, plus the members (escaped identities and
	// about 20 bytes each) and about 30 for the rest.
	bound := 100 + 30
	for _, m := range ms {
		bound += 20 + 2*len(m.ID)
	}
	if n := len(rec.HolderIdentity); n > bound {
		t.Errorf("assignment of 100 shards and 3 members encodes to %d bytes, more than %d", n, bound)
	}
}

// TestUndecodableAssignmentIsAnError: a hand-edited or foreign record is
// refused, not taken for an empty assignment.
func TestUndecodableAssignmentIsAnError(t *testing.T) {
	for _, c := range []struct{ holder, want string }{
		{"leader-1", "not an assignment"},
		{`{"shards":2,"members":[{"slot":0,"id":"a"}],"owners":"0"}`, "1 owners for 2 shards"},
		{`{"shards":2,"members":[{"slot":0,"id":"a"}],"owners":"01"}`, "names no member"},
		{`{"shards":1,"members":[],"owners":"0"}`, "names no member"},
	} {
		_, err := decodeAssignment(&lock.Record{HolderIdentity: c.holder, LeaderTransitions: 1})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.holder, err, c.want)
		}
	}
}
