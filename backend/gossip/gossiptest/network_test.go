package gossiptest

import (
	"errors"
	"io"
	"log"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// transports starts one Transport per name on n, shut down when the test
// ends (what nobody read is drained: NetTransport's listeners block on a
// full channel, and its Shutdown waits for them).
func transports(t *testing.T, n *Network, names ...string) map[string]*Transport {
	t.Helper()
	trs := map[string]*Transport{}
	for _, name := range names {
		tr, err := n.Transport(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			done := make(chan struct{})
			defer close(done)
			go func() {
				for {
					select {
					case <-tr.PacketCh():
					case c := <-tr.StreamCh():
						_ = c.Close()
					case <-done:
						return
					}
				}
			}()
			_ = tr.Shutdown()
		})
		trs[name] = tr
	}
	return trs
}

// receivesFirst fails t unless the next packet tr receives, within 10 s,
// is want: one sent before it over a cut link must have been lost.
func receivesFirst(t *testing.T, tr *Transport, want string) {
	t.Helper()
	select {
	case p := <-tr.PacketCh():
		if string(p.Buf) != want {
			t.Fatalf("%s received %q first, want %q (the one sent over the cut link must be lost)", tr.Name(), p.Buf, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s received nothing, want %q", tr.Name(), want)
	}
}

// A node's memberlist name need not be its name on the Network (the gossip
// backend names a process identity#incarnation): memberlist addresses its
// packets and streams by node name and address, and a fault between two
// transports applies to them all, by the address the message goes to.
func TestFaultsApplyToTrafficAddressedByMemberlistNodeName(t *testing.T) {
	n := NewNetwork(1)
	defer n.Close()
	trs := transports(t, n, "a", "b")
	to := memberlist.Address{Addr: trs["b"].Addr(), Name: "b#0000000000000001"}
	send := func(msg string) {
		t.Helper()
		if _, err := trs["a"].WriteToAddress([]byte(msg), to); err != nil {
			t.Fatal(err)
		}
	}

	n.Cut("a", "b")
	send("over the cut link")
	if _, err := trs["a"].DialAddressTimeout(to, 10*time.Millisecond); !errors.Is(err, ErrCut) {
		t.Fatalf("a dialled b's memberlist name over the cut link: err %v, want ErrCut", err)
	}
	if got := n.Counts("a", "b"); got != (Counts{Packets: 1, Streams: 1}) {
		t.Errorf("Counts(a, b) = %+v, want one packet and one stream", got)
	}
	n.Heal()
	send("healed")
	receivesFirst(t, trs["b"], "healed")
}

// The same, end to end: two memberlist nodes named as the gossip backend
// names them, one isolated by its name on the Network. Each failure
// detector pings the other by memberlist node name (and gets its acks by
// address): each declares the other dead, and the pings count on the
// links between the Network's names.
func TestIsolatedMemberlistNodesDeclareEachOtherDead(t *testing.T) {
	n := NewNetwork(2)
	defer n.Close()
	trs := transports(t, n, "a", "b")
	ml := map[string]*memberlist.Memberlist{}
	for _, name := range []string{"a", "b"} {
		c := memberlist.DefaultLocalConfig()
		c.Name = name + "#0000000000000001"
		c.Transport = trs[name]
		c.ProbeInterval, c.ProbeTimeout, c.GossipInterval = 50*time.Millisecond, 25*time.Millisecond, 20*time.Millisecond
		c.SuspicionMult = 1
		c.Logger = log.New(io.Discard, "", 0)
		m, err := memberlist.Create(c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = m.Shutdown() })
		ml[name] = m
	}
	if _, err := ml["b"].Join([]string{trs["a"].Addr()}); err != nil {
		t.Fatal(err)
	}
	waitMembers := func(name string, want int) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for ml[name].NumMembers() != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s sees %d members, want %d", name, ml[name].NumMembers(), want)
			}
			time.Sleep(10 * time.Millisecond) // polling memberlist's view
		}
	}
	waitMembers("a", 2)
	waitMembers("b", 2)

	n.Isolate("a", []string{"b"})
	waitMembers("a", 1)
	waitMembers("b", 1)
	if c := n.Counts("b", "a"); c.Packets == 0 {
		t.Errorf("Counts(b, a) = %+v: memberlist's pings of a were not counted on the link b → a", c)
	}
}
