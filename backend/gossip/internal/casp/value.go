package casp

import (
	"bytes"
	"errors"
	"fmt"
)

// Sentinel errors of the change functions in this package; the glue maps
// them to lock.ErrConflict and lock.ErrNotFound.
var (
	// ErrConflict: the register does not hold the version the change expected
	// (or Create found a value already there).
	ErrConflict = errors.New("casp: register holds another version")
	// ErrNotFound: the change expected a value and the register is empty.
	ErrNotFound = errors.New("casp: register is empty")
)

// Value is the register's content. The zero Value (Version 0, nil Data) is
// the empty register: no record.
type Value struct {
	// Version counts the writes since the register was last empty; a write
	// sets it to the previous Version + 1.
	Version uint64 `json:"v,omitempty"`
	// Written is the ballot of the round that wrote this value. Ballots are
	// never reused, so Token (Version and Written) names one write for ever,
	// even across a re-initialisation of the register: a compare-and-swap
	// against a token read before a re-initialisation can never succeed
	// (no ABA).
	Written Ballot `json:"w,omitzero"`
	// Data is the record, opaque to the protocol.
	Data []byte `json:"d,omitempty"`
}

// Token is the version token of a value: what a caller remembers after a
// read and compares before a write.
type Token struct {
	Version uint64 `json:"v,omitempty"`
	Written Ballot `json:"w,omitzero"`
}

// String formats t as the record's resource version, e.g. "4.17@node-a/3f2a".
func (t Token) String() string { return fmt.Sprintf("%d.%s", t.Version, t.Written) }

// IsEmpty reports whether v is the empty register.
func (v Value) IsEmpty() bool { return v.Version == 0 && v.Written.IsZero() && v.Data == nil }

// Token returns v's version token.
func (v Value) Token() Token { return Token{Version: v.Version, Written: v.Written} }

// Equal reports whether v and o are the same write with the same data.
func (v Value) Equal(o Value) bool {
	return v.Token() == o.Token() && bytes.Equal(v.Data, o.Data)
}

// Change decides a round's outcome from the register's current value cur,
// which is the value accepted at the highest ballot among a quorum of
// promises. It returns write=false to keep cur (a read, or a refused
// compare-and-swap), or write=true and the new data. A non-nil error refuses
// the change: the round still makes cur chosen (so the caller's view is
// linearizable) and reports the error in [Outcome].Err.
//
// The compare-and-swap check against the version the caller last read lives
// here; see [Read], [Create] and [Swap]. A Change must be deterministic and
// must not keep cur.Data (it is shared).
type Change func(cur Value) (data []byte, write bool, err error)

// Read keeps the register as it is: a quorum read.
func Read(Value) ([]byte, bool, error) { return nil, false, nil }

// Create writes data only if the register is empty, else fails with
// ErrConflict.
func Create(data []byte) Change {
	return func(cur Value) ([]byte, bool, error) {
		if !cur.IsEmpty() {
			return nil, false, fmt.Errorf("%w: create found version %s", ErrConflict, cur.Token())
		}
		return data, true, nil
	}
}

// Swap writes data only if the register still holds the version expect,
// else fails with ErrConflict (or ErrNotFound if the register is empty).
func Swap(expect Token, data []byte) Change {
	return func(cur Value) ([]byte, bool, error) {
		if cur.IsEmpty() {
			return nil, false, fmt.Errorf("%w: expected version %s", ErrNotFound, expect)
		}
		if cur.Token() != expect {
			return nil, false, fmt.Errorf("%w: expected version %s, found %s", ErrConflict, expect, cur.Token())
		}
		return data, true, nil
	}
}
