package gossip

import (
	"testing"

	"github.com/go-logr/logr"
)

// memberlist listens as soon as it is created, before New has set the
// transport's handler and acceptor, and a restarted voter's peers keep
// sending to its address: a message in that window is dropped like a lost
// one. The fault campaign found it as a crash (nil pointer in
// node.receive, now transport.receive) of a voter restarted on its port.
func TestMessageBeforeNewHasFinishedIsDropped(t *testing.T) {
	s, err := Options{Name: "early", Identity: "a", Voters: []string{"a", "b", "c"}, Insecure: true, Bind: "127.0.0.1:0"}.validate()
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMetrics(nil, s.Name)
	if err != nil {
		t.Fatal(err)
	}
	n, err := newTransport(s, logr.Discard(), m)
	if err != nil {
		t.Fatal(err)
	}
	defer n.close(false)
	b, err := (&envelope{Kind: kindPrepare, From: "b", Election: s.Name, Voters: s.voterHash}).encode()
	if err != nil {
		t.Fatal(err)
	}
	delegate{n}.NotifyMsg(b) // panicked: n.handle was still nil
}
