package healthz

import (
	"encoding/json"
	"fmt"
	"time"
)

// Status is a snapshot of an elector's state, as served on /status and read
// by the watchdog and the metrics.
type Status struct {
	// Name labels the election (metrics use it as the "name" label).
	Name string `json:"name"`
	// Identity is this candidate.
	Identity string `json:"identity"`
	// Lock describes the store object.
	Lock string `json:"lock"`
	// Leading is true while this process holds the lock.
	Leading bool `json:"leading"`
	// Recovering is true while this process's lease has lapsed and, with
	// recovery on (Recover), its function keeps running, its write gate
	// closed, while it renews the same term again.
	Recovering bool `json:"recovering,omitempty"`
	// Leader is the last observed holder ("" if none).
	Leader string `json:"leader"`
	// Term is this process's current term (the fencing token) while
	// leading, else the last term it held (0 if never).
	Term int64 `json:"term"`
	// LeaderTerm is the observed leader's term (its fencing token), on
	// every replica: the record's LeaderTransitions while it names a
	// holder that leads, else 0 (no holder, or a claim not yet confirmed).
	LeaderTerm int64 `json:"leaderTerm"`
	// Transitions is the record's LeaderTransitions as last observed.
	Transitions int64 `json:"transitions"`
	// LastRenew is when this process last renewed (zero if never).
	LastRenew time.Time `json:"lastRenew,omitzero"`
	// Expiry is when, by this process's clock, the observed lease lapses if
	// not renewed.
	Expiry time.Time `json:"expiry,omitzero"`
	// LeaseDuration is the configured lease duration.
	LeaseDuration time.Duration `json:"leaseDuration"`

	// Heartbeat is when the elector's loop last came round (campaigning or
	// leading), and HeartbeatDue when it must come round again: its
	// longest wait from then plus one bounded store call. A loop past due
	// is wedged (a store call that ignores its context, for one).
	Heartbeat    time.Time `json:"heartbeat,omitzero"`
	HeartbeatDue time.Time `json:"heartbeatDue,omitzero"`
	// Callbacks are the user's callbacks running now.
	Callbacks []Callback `json:"callbacks,omitempty"`
	// StoreError is the error of the last store call, if it failed, and
	// StoreErrorSince when the calls began to fail.
	StoreError      string    `json:"storeError,omitempty"`
	StoreErrorSince time.Time `json:"storeErrorSince,omitzero"`
	// StoreErrors counts the store calls that failed since the elector
	// started (leader_election_store_errors_total).
	StoreErrors int64 `json:"storeErrors"`

	// Shards is set when the source is a replica of a shard set (package
	// shard) instead of one election: its part in the set and the
	// assignment. Leading is then true while it runs at least one shard.
	Shards *Shards `json:"shards,omitempty"`
}

// Shards is a replica's part in a shard set and the assignment it last
// read (docs/shards.md).
type Shards struct {
	// Count is the number of shards in the set.
	Count int `json:"count"`
	// Slot is the membership slot this replica holds, -1 while it holds
	// none (joining, or after losing its slot).
	Slot int `json:"slot"`
	// Generation is the generation of the assignment last read (0: none
	// read yet); Acked the one this replica acknowledged last.
	Generation int64 `json:"generation"`
	Acked      int64 `json:"acked"`
	// Owned are the shards this replica runs now, each with its term.
	Owned []OwnedShard `json:"owned"`
	// Members are the members of that assignment, each with its shards.
	Members []ShardMember `json:"members"`
	// Starts and Stops count the shards this replica started and stopped
	// (their functions returned) since it began.
	Starts int64 `json:"starts"`
	Stops  int64 `json:"stops"`
}

// OwnedShard is a shard this replica runs, with its fencing term.
type OwnedShard struct {
	Shard int   `json:"shard"`
	Term  int64 `json:"term"`
}

// ShardMember is one member of an assignment: its slot, its identity and
// the shards the assignment gives it.
type ShardMember struct {
	Slot     int    `json:"slot"`
	Identity string `json:"identity"`
	Shards   []int  `json:"shards"`
}

// statusJSON is Status with its duration as text.
type statusJSON struct {
	plainStatus
	LeaseDuration string `json:"leaseDuration"`
}

type plainStatus Status

// MarshalJSON writes LeaseDuration as Go duration text ("15s"), not
// nanoseconds, for people reading /status.
func (s Status) MarshalJSON() ([]byte, error) {
	return json.Marshal(statusJSON{plainStatus(s), s.LeaseDuration.String()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Status) UnmarshalJSON(b []byte) error {
	var j statusJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Status(j.plainStatus)
	if j.LeaseDuration != "" {
		d, err := time.ParseDuration(j.LeaseDuration)
		if err != nil {
			return fmt.Errorf("leaseDuration: %w", err)
		}
		s.LeaseDuration = d
	}
	return nil
}

// Callback is a user callback that is running.
type Callback struct {
	// Name is the callback's name, such as "OnStoppedLeading".
	Name string `json:"name"`
	// Since is when it was called.
	Since time.Time `json:"since"`
	// Due is when it must have returned (zero: no bound yet, such as the
	// leader's function before its context is cancelled).
	Due time.Time `json:"due,omitzero"`
}

// Source is what the health server reads: an elector.
type Source interface {
	Status() Status
}
