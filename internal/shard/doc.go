// Package shard holds the protocol for sharded leadership: M shards spread
// over the live replicas, balanced, each run by at most one replica at a
// time with its own fencing term, at a store cost that does not grow with
// M. The protocol and its safety argument are in docs/shards.md.
//
// So far the package is the protocol's pure core, which knows no store and
// no clock: Assign (the balanced assignment that moves the fewest shards)
// and Replica (one member's state machine: revoke, acknowledge, acquire
// behind the barrier). The glue over lock.Interface and the Run API are
// still to come (issue #26).
package shard
