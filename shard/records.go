package shard

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/b3df926d/leaderelection/healthz"
	core "github.com/b3df926d/leaderelection/internal/shard"
	"github.com/b3df926d/leaderelection/lock"
)

// The records are ordinary lock records (lock.Record), so every backend,
// and client-go's LeaseLock, holds them without a new capability; what
// the protocol needs beyond the record's fields is encoded in
// HolderIdentity (docs/shards.md, "Record encoding").
//
//   - A held slot: HolderIdentity "<identity>#<digest>" (the digest of the
//     acknowledged assignment, 16 hex digits), LeaderTransitions its
//     generation, a lease of LeaseDuration and RenewTime renewed.
//   - A free slot: HolderIdentity "", LeaderTransitions the highest
//     generation its last holder knew.
//   - The assignment: LeaderTransitions its generation, HolderIdentity a
//     JSON object: the shard count, the members (slot, identity) and one
//     character per shard naming its owner.

func slotName(name string, k int) string { return name + SlotSuffix(k) }

// SlotSuffix ends the name of slot k's record: set Name's is
// Name+SlotSuffix(k).
func SlotSuffix(k int) string { return fmt.Sprintf("-slot-%d", k) }

// SlotHolder returns the identity of the member holding a slot record
// ("" if the slot is free), for tools that read the store.
func SlotHolder(rec *lock.Record) string {
	s := decodeSlot(rec, 0)
	if s.State != core.Held {
		return ""
	}
	return s.Member.ID
}

// AssignmentSuffix ends the name of a shard set's assignment record: the
// set Name's record is Name+AssignmentSuffix (its slots Name-slot-k).
const AssignmentSuffix = "-shards"

func assignmentName(name string) string { return name + AssignmentSuffix }

// Assignment is a shard set's assignment as its record holds it, for
// tools that read the store (leaderelection status).
type Assignment struct {
	Generation int64
	// Count is the shard count.
	Count int
	// Members, by slot, each with the shards it owns.
	Members []healthz.ShardMember
}

// DecodeAssignment decodes an assignment record (the record named
// Name+AssignmentSuffix); an error if rec holds no assignment.
func DecodeAssignment(rec *lock.Record) (Assignment, error) {
	a, err := decodeAssignment(rec)
	if err != nil {
		return Assignment{}, err
	}
	out := Assignment{Generation: a.Generation, Count: len(a.Owners)}
	for _, m := range a.Members {
		out.Members = append(out.Members, healthz.ShardMember{Slot: m.Slot, Identity: m.ID, Shards: a.Shards(m)})
	}
	return out, nil
}

// digestSep ends a held slot's identity; the digest after it is hex, so
// the last one is the separator whatever the identity holds.
const digestSep = "#"

func leaseSeconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }

// heldRecord is the slot record of member id having acknowledged ack.
func heldRecord(id string, ack core.Ack, lease time.Duration, acquired, renewed metav1.Time) lock.Record {
	return lock.Record{
		HolderIdentity:       fmt.Sprintf("%s%s%016x", id, digestSep, ack.Digest),
		LeaseDurationSeconds: leaseSeconds(lease),
		AcquireTime:          acquired,
		RenewTime:            renewed,
		LeaderTransitions:    int(ack.Generation),
	}
}

// freeRecord is a free slot record that keeps generation known, so that
// the count goes on from it.
func freeRecord(known int64, now time.Time) lock.Record {
	t := metav1.NewTime(now)
	return lock.Record{LeaseDurationSeconds: 1, AcquireTime: t, RenewTime: t, LeaderTransitions: int(known)}
}

// decodeSlot reads slot k's record. A holder without a digest (a record
// this package did not write) is a member whose acknowledgement matches
// no assignment: it blocks every barrier until its lease expires and it
// is evicted.
func decodeSlot(rec *lock.Record, k int) core.Slot {
	ack := core.Ack{Generation: int64(rec.LeaderTransitions)}
	h := rec.HolderIdentity
	if h == "" {
		return core.Slot{State: core.Free, Ack: ack}
	}
	id := h
	if i := strings.LastIndex(h, digestSep); i >= 0 {
		if d, err := strconv.ParseUint(h[i+1:], 16, 64); err == nil {
			id, ack.Digest = h[:i], d
		}
	}
	return core.Slot{State: core.Held, Member: core.Member{Slot: k, ID: id}, Ack: ack}
}

// ownerChars name an assignment's owners, one character per shard: the
// owner's index in the member list.
const ownerChars = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz-_"

type assignmentBody struct {
	Shards  int          `json:"shards"`
	Members []memberBody `json:"members"`
	Owners  string       `json:"owners"`
}

type memberBody struct {
	Slot int    `json:"slot"`
	ID   string `json:"id"`
}

// assignmentRecord encodes a.
func assignmentRecord(a core.Assignment, now time.Time) (lock.Record, error) {
	b := assignmentBody{Shards: len(a.Owners)}
	for _, m := range a.Members {
		b.Members = append(b.Members, memberBody{m.Slot, m.ID})
	}
	owners := make([]byte, len(a.Owners))
	for s, o := range a.Owners {
		if o < 0 || o >= len(ownerChars) {
			return lock.Record{}, fmt.Errorf("shard %d has owner %d", s, o)
		}
		owners[s] = ownerChars[o]
	}
	b.Owners = string(owners)
	raw, err := json.Marshal(b)
	if err != nil {
		return lock.Record{}, err
	}
	t := metav1.NewTime(now)
	// A lease so that stores that check one (a Lease naming a holder
	// needs leaseDurationSeconds) keep it; nobody takes it over.
	return lock.Record{HolderIdentity: string(raw), LeaseDurationSeconds: 1, AcquireTime: t, RenewTime: t,
		LeaderTransitions: int(a.Generation)}, nil
}

// decodeAssignment reads the assignment record.
func decodeAssignment(rec *lock.Record) (*core.Assignment, error) {
	var b assignmentBody
	if err := json.Unmarshal([]byte(rec.HolderIdentity), &b); err != nil {
		return nil, fmt.Errorf("holder identity is not an assignment: %w", err)
	}
	if len(b.Owners) != b.Shards {
		return nil, fmt.Errorf("%d owners for %d shards", len(b.Owners), b.Shards)
	}
	a := &core.Assignment{Generation: int64(rec.LeaderTransitions), Owners: make([]int, b.Shards)}
	for _, m := range b.Members {
		a.Members = append(a.Members, core.Member{Slot: m.Slot, ID: m.ID})
	}
	for s := range b.Owners {
		o := strings.IndexByte(ownerChars, b.Owners[s])
		if o < 0 || o >= len(a.Members) {
			return nil, fmt.Errorf("shard %d: owner %q names no member", s, b.Owners[s])
		}
		a.Owners[s] = o
	}
	if len(a.Members) == 0 && b.Shards > 0 {
		return nil, errors.New("no members")
	}
	return a, nil
}
