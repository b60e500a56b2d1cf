package gossip

import (
	"encoding/binary"
	"math"
	"time"

	"github.com/hashicorp/memberlist"
)

// process is one memberlist member: a process of the candidate whose
// Options.Identity is id. Its memberlist node name is the identity and the
// incarnation, so that a restarted process is a new member at once,
// wherever it listens; every other part of the backend names candidates by
// identity, and the transport maps an identity to its current process
// (see transport.alive).
type process struct {
	id  string
	inc uint64 // random per start (casp's Incarnation)
	// started is when the process started, in Unix nanoseconds by its
	// own clock: of two alive processes of one identity, the one started
	// later is current (a restart; see transport.twinCheckLocked for
	// twins). All members compare the same numbers, so they agree on
	// which. A restart onto a host whose clock is behind by more than the
	// restart took is current only once its predecessor is declared dead,
	// as before node names were per process.
	started int64
	addr    string // "host:port"
}

// after reports whether p started after q (ties broken by incarnation,
// so that every member picks the same).
func (p process) after(q process) bool {
	if p.started != q.started {
		return p.started > q.started
	}
	return p.inc > q.inc
}

// metaVersion is the first byte of a member's metadata. Version 1 is
// 1 (version), 8 (incarnation), 8 (start time), 2 (identity length, n)
// and n (identity) bytes, integers little-endian; a later version may
// append fields after the identity, which version 1 readers ignore.
const (
	metaVersion   = 1
	metaFixedSize = 1 + 8 + 8 + 2
	// maxIdentity is the longest Options.Identity that fits memberlist's
	// metadata limit.
	maxIdentity = memberlist.MetaMaxSize - metaFixedSize
)

func encodeMeta(p process) []byte {
	b := make([]byte, 0, metaFixedSize+len(p.id))
	b = append(b, metaVersion)
	b = binary.LittleEndian.AppendUint64(b, p.inc)
	b = binary.LittleEndian.AppendUint64(b, uint64(p.started))
	b = binary.LittleEndian.AppendUint16(b, uint16(len(p.id)))
	return append(b, p.id...)
}

// decodeMeta reads the metadata of the member memberlist calls name. The
// metadata of earlier versions of this backend, whose node name was the
// identity, is the incarnation alone (8 bytes).
func decodeMeta(name string, b []byte) (process, bool) {
	if len(b) == 8 {
		return process{id: name, inc: binary.LittleEndian.Uint64(b)}, true
	}
	if len(b) < metaFixedSize || b[0] < metaVersion {
		return process{}, false
	}
	n := int(binary.LittleEndian.Uint16(b[17:]))
	if n == 0 || len(b) < metaFixedSize+n {
		return process{}, false
	}
	return process{
		id:      string(b[metaFixedSize : metaFixedSize+n]),
		inc:     binary.LittleEndian.Uint64(b[1:]),
		started: int64(binary.LittleEndian.Uint64(b[9:])),
	}, true
}

// deadAfter is about the longest memberlist configured as c takes to
// declare a crashed member dead among members alive: until its turn to be
// probed comes, the probe, and the suspicion timeout with no confirmation
// shortening it (memberlist's suspicionTimeout times
// SuspicionMaxTimeoutMult).
func deadAfter(c *memberlist.Config, members int) time.Duration {
	scale := math.Max(1, math.Log10(math.Max(1, float64(members))))
	suspicion := time.Duration(float64(c.SuspicionMult) * scale * float64(c.ProbeInterval))
	return time.Duration(members+1)*c.ProbeInterval + c.ProbeTimeout + time.Duration(max(c.SuspicionMaxTimeoutMult, 1))*suspicion
}
