package gossip

import (
	"testing"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
)

// A read that began before a push of a newer value and ends after it (a
// candidate starting up as the leader releases) does not make the
// candidate forget the newer value: served the older record from its
// cache, it would wait out the lease. An empty register read is still
// learned (the voters re-initialised it).
func TestReadEndingAfterANewerPushKeepsTheNewerValue(t *testing.T) {
	l := &Lock{learned: make(chan struct{})}
	held := casp.Value{Written: casp.Ballot{Counter: 10, Node: "b"}, Data: []byte(`{"holderIdentity":"b"}`)}
	released := casp.Value{Written: casp.Ballot{Counter: 11, Node: "b"}, Data: []byte(`{}`)}
	l.learn(released, false, false) // the push
	l.learn(held, true, false)      // the read's outcome, older
	if !l.latest.Equal(released) {
		t.Fatalf("after a read of an older value, the cache holds %s, want the newer %s", l.latest.Written, released.Written)
	}
	l.learn(casp.Value{}, true, false)
	if !l.latest.IsEmpty() {
		t.Fatalf("an empty register read was not learned: the cache holds %s", l.latest.Written)
	}
}
