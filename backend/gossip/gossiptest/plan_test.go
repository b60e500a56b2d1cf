package gossiptest

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
)

// Two nodes, each on a Network of its own as in two processes, follow one
// plan file: a partition cuts what either sends to the other's address,
// even with no node name (a seed join), and a healed plan lets it through;
// each acknowledges the plans it applied.
func TestPlanPartitionsNodesOnSeparateNetworks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path := filepath.Join(t.TempDir(), "plan")
	nets := map[string]*Network{"a": NewNetwork(1), "b": NewNetwork(2)}
	trs := map[string]*Transport{}
	for name, n := range nets {
		tr, err := n.TransportAt(name, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Shutdown()
		trs[name] = tr
	}
	addrs := map[string]string{"a": trs["a"].Addr(), "b": trs["b"].Addr()}
	write := func(gen int64, groups ...[]string) {
		t.Helper()
		if err := WritePlan(path, Plan{Gen: gen, Addrs: addrs, Groups: groups}); err != nil {
			t.Fatal(err)
		}
	}
	waitApplied := func(gen int64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for _, name := range []string{"a", "b"} {
			for Applied(path, name) != gen {
				if time.Now().After(deadline) {
					t.Fatalf("%s applied plan %d, want %d", name, Applied(path, name), gen)
				}
				time.Sleep(5 * time.Millisecond) // polling the acknowledgement file
			}
		}
	}
	if Applied(path, "a") != -1 {
		t.Fatalf("Applied before any plan = %d, want -1", Applied(path, "a"))
	}
	if err := nets["a"].Follow(ctx, path, "a", 5*time.Millisecond); err == nil {
		t.Fatal("Follow of a missing plan file succeeded")
	}
	write(0)
	for name, n := range nets {
		if err := n.Follow(ctx, path, name, 5*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	waitApplied(0)

	send := func(msg string) {
		t.Helper()
		// No Name: only the registered address says this goes to b.
		if _, err := trs["a"].WriteToAddress([]byte(msg), memberlist.Address{Addr: addrs["b"]}); err != nil {
			t.Fatal(err)
		}
	}
	send("healthy")
	receivesFirst(t, trs["b"], "healthy")

	write(1, []string{"a"}, []string{"b"})
	waitApplied(1)
	send("across the partition")
	if _, err := trs["b"].DialAddressTimeout(memberlist.Address{Addr: addrs["a"]}, 50*time.Millisecond); err == nil {
		t.Fatal("b dialled a across the partition")
	}

	write(2)
	waitApplied(2)
	send("healed")
	receivesFirst(t, trs["b"], "healed")
}
