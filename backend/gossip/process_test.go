package gossip

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/hashicorp/memberlist"
)

func TestNodeMetaCarriesIdentityIncarnationAndStart(t *testing.T) {
	p := process{id: "v1", inc: 0xfeedface, started: 1_796_000_000_123_456_789}
	got, ok := decodeMeta("v1#00000000feedface", encodeMeta(p))
	if !ok || got != p {
		t.Fatalf("decodeMeta(encodeMeta(%+v)) = %+v, %v", p, got, ok)
	}
	// The longest identity Options allow fits memberlist's limit.
	long := process{id: strings.Repeat("x", maxIdentity)}
	if n := len(encodeMeta(long)); n > memberlist.MetaMaxSize {
		t.Errorf("metadata of a %d-byte identity is %d bytes, over memberlist's %d", maxIdentity, n, memberlist.MetaMaxSize)
	}
	// A later version may append fields.
	if got, ok := decodeMeta("x", append(encodeMeta(p), 7, 7)); !ok || got != p {
		t.Errorf("metadata with fields appended: %+v, %v", got, ok)
	}
	// Earlier versions: the node name is the identity, the metadata the
	// incarnation.
	legacy := binary.LittleEndian.AppendUint64(nil, 42)
	if got, ok := decodeMeta("v2", legacy); !ok || got != (process{id: "v2", inc: 42}) {
		t.Errorf("legacy metadata: %+v, %v", got, ok)
	}
	for _, bad := range [][]byte{nil, {1, 2, 3}, encodeMeta(p)[:metaFixedSize+1], encodeMeta(process{inc: 1})} {
		if got, ok := decodeMeta("n", bad); ok {
			t.Errorf("decodeMeta(%v) = %+v; want refused", bad, got)
		}
	}
}

// The process started last is the identity's current one, whatever the
// order memberlist tells of them in.
func TestNewestProcessOfAnIdentityIsCurrent(t *testing.T) {
	n := &transport{s: &settings{Options: Options{Identity: "me"}}, inc: 9, procs: map[string]process{},
		alive: map[string]string{}, incs: map[string]uint64{}}
	old := process{id: "v1", inc: 5, started: 100, addr: "127.0.0.1:1"}
	neu := process{id: "v1", inc: 3, started: 200, addr: "127.0.0.1:2"}
	for _, order := range [][]process{{old, neu}, {neu, old}} {
		clear(n.procs)
		for _, p := range order {
			n.procs[p.addr] = p
			n.currentLocked(p.id)
		}
		if n.alive["v1"] != neu.addr || n.incs["v1"] != neu.inc {
			t.Errorf("told %v first: current is %s/%d, want the later start %s/%d", order[0].addr, n.alive["v1"], n.incs["v1"], neu.addr, neu.inc)
		}
		if !n.supersededLocked("v1", old.inc) || n.supersededLocked("v1", neu.inc) || n.supersededLocked("v1", 77) {
			t.Error("superseded: want only the earlier process")
		}
	}
	delete(n.procs, neu.addr)
	n.currentLocked("v1")
	if n.alive["v1"] != old.addr {
		t.Errorf("the later process gone: current %s, want %s", n.alive["v1"], old.addr)
	}
	// For its own identity, a node is always the current process.
	n.procs["a"] = process{id: "me", inc: 9, started: 1, addr: "127.0.0.1:9"}
	n.procs["b"] = process{id: "me", inc: 8, started: 2, addr: "127.0.0.1:8"}
	n.currentLocked("me")
	if n.incs["me"] != 9 {
		t.Errorf("own identity: current incarnation %d, want its own 9", n.incs["me"])
	}
}
