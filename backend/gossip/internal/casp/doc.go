// Package casp is the gossip backend's replicated register: a single
// compare-and-swap register kept by a static, odd list of voters with
// CASPaxos (Rystsov, arXiv 1802.07000), extended so that a voter may restart
// without its state (amnesia) and never lose a chosen write.
//
// The package is pure protocol: an [Acceptor] and a [Proposer] are
// deterministic state machines. They know no network, no memberlist, no
// goroutines and no wall clock. The caller moves [Message] values between
// them (in any order, duplicated, delayed or lost), passes the time in when a
// rule needs it, and provides durable [Storage] if it has any. The memberlist
// glue in backend/gossip and the tests' simulation and exhaustive search drive
// the very same types; the glue and the simulation also share one round
// policy, the [Driver] (resends, the stall rule's replacement).
//
// # Protocol
//
// A write or a read is one round of a [Proposer]:
//
//  1. prepare(ballot) to every voter; a voter promises if the ballot is above
//     every ballot it promised before, and reports the value it accepted last;
//  2. once a quorum (⌊N/2⌋+1) promised, the change is applied to the value
//     reported with the highest ballot, and accept(ballot, value) goes to
//     exactly the voters whose promises were used, naming the incarnation
//     that promised;
//  3. once the same quorum accepted, the value is chosen.
//
// A read is a round whose change keeps the value; it still runs step 2, so a
// value a read returns is chosen and no later read can return an older one.
//
// # Rules beyond plain CASPaxos
//
//   - Ballots are unique: (counter, proposer node, proposer incarnation).
//   - A voter promises only a ballot strictly above its promise.
//   - A voter accepts only the exact ballot its current incarnation promised
//     (the accept names the acceptor incarnation).
//   - A voter that starts without its record answers no prepare and no accept
//     (it is recovering). It runs one round as a proposer only, at a ballot
//     above its promise floor (every ballot its earlier incarnations may have
//     promised), through a quorum of the other voters; its own acceptor does
//     not take part. Once that round is chosen it adopts the round's ballot
//     and value ([Acceptor.Recover]) and starts answering.
//   - The floor comes from [Storage] (the promise, persisted before each
//     reply) or, with no disk, from bounded clocks: acceptors refuse ballots
//     whose counter is more than MaxAhead ahead of their clock, so a restarted
//     voter knows that nothing it promised before exceeds its clock plus
//     MaxAhead.
//   - Every message carries [VoterHash]; a voter or proposer with a different
//     voter list refuses it, so a misconfigured node never forms its own
//     majority.
//   - Every reply says whether its voter is blank ([Acceptor.Blank]: an
//     empty Storage at start, no part in any round that may write). A
//     query that hears every voter report the empty register, blank,
//     proves the register new ([Outcome.New]): no write was ever chosen,
//     unless every voter that accepted it has lost its state since.
//
// docs/backends/gossip.md ("Safety argument") explains why each rule is
// needed; the package's tests prove it by exhaustive search over small scopes
// and by a seeded simulation whose histories porcupine checks for
// linearizability.
package casp
