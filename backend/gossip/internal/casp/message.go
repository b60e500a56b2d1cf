package casp

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
)

// ErrVoterHash: a message was built for another voter list. The glue logs it
// (naming the sender) and counts it; the message is dropped.
var ErrVoterHash = errors.New("casp: message carries another voter list's hash")

// Kind is a message's type.
type Kind uint8

// Message kinds. A proposer sends Prepare and Accept, or Query for a read;
// an acceptor answers with Promise, Accepted, Report or Nack.
const (
	KindPrepare Kind = iota + 1
	KindPromise
	KindAccept
	KindAccepted
	KindNack
	// KindQuery asks what the acceptor accepted last, promising nothing.
	KindQuery
	// KindReport answers a Query.
	KindReport
)

var kindNames = [...]string{"invalid", "prepare", "promise", "accept", "accepted", "nack", "query", "report"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// NackReason says why an acceptor refused.
type NackReason uint8

// Nack reasons.
const (
	// NackBallot: the acceptor promised Seen, which is not below the ballot
	// (prepare), or it did not promise exactly this ballot in this incarnation
	// (accept). Retry above Seen.
	NackBallot NackReason = iota + 1
	// NackRecovering: the acceptor has no record yet and answers nothing
	// until it has recovered. It is not a vote.
	NackRecovering
	// NackAhead: the ballot's counter is more than MaxAhead ahead of the
	// acceptor's clock; Seen.Counter is the highest counter it takes now.
	// The proposer's clock is ahead, or a counter ran away.
	NackAhead
)

var reasonNames = [...]string{"invalid", "ballot", "recovering", "ahead"}

func (r NackReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Message is every protocol message, one plain struct so the glue has one
// thing to encode (it uses encoding/json; the tags keep it small). Which
// fields matter depends on Kind:
//
//   - Prepare: Ballot, and Recovery if the round is a voter's recovery
//     round ([Proposer.Recover]), which writes nothing, or New if it is a
//     write made on a proof that the register is new ([Proposer.StartNew]).
//   - Promise: Ballot (the one promised), Incarnation (the acceptor's),
//     Accepted and Value (what it accepted last; zero if nothing).
//   - Accept: Ballot, Incarnation (the acceptor incarnation that promised;
//     any other refuses), Value, and Next if set: a ballot above Ballot
//     that the acceptor promises at once after accepting (the proposer's
//     next round, whose prepare phase this is; see [Proposer.Start]);
//     Recovery and New as on the Prepare.
//   - Accepted: Ballot, Incarnation, and Next if the acceptor promised the
//     accept's Next with it (its accepted value is then the accept's).
//   - Nack: Ballot (the refused one), Incarnation, Reason, Seen.
//   - Query: Ballot (only to match the reports to the query; no acceptor
//     promises or remembers it).
//   - Report: Ballot (the query's), Incarnation, Accepted and Value.
//
// Every reply (Promise, Accepted, Nack, Report) carries Blank.
//
// From and To are voter or proposer identities (Options.Identity, not
// memberlist's node names, which add the process incarnation); the glue
// routes by To and must set From to the identity of the member the
// envelope came from, since the state machines trust it (every member
// holds the election's key).
type Message struct {
	Kind        Kind       `json:"k"`
	From        string     `json:"f"`
	To          string     `json:"t"`
	VoterHash   string     `json:"h"`
	Ballot      Ballot     `json:"b"`
	Incarnation uint64     `json:"i,omitempty"`
	Accepted    Ballot     `json:"a,omitzero"`
	Value       Value      `json:"v,omitzero"`
	Seen        Ballot     `json:"s,omitzero"`
	Next        Ballot     `json:"x,omitzero"`
	Reason      NackReason `json:"r,omitempty"`
	// Recovery marks a Prepare or Accept of a recovery round: a blank
	// acceptor stays blank (see [Acceptor.Blank]).
	Recovery bool `json:"rc,omitempty"`
	// New marks a Prepare or Accept of a write made on a proof that the
	// register is new ([Outcome.New]): every voter answered that proof
	// ready, so a voter quiet after a new election ends its quiet time
	// (see [Acceptor.NewElection]).
	New bool `json:"nw,omitempty"`
	// Blank, on a reply, says the acceptor was blank ([Acceptor.Blank])
	// once it had handled the request.
	Blank bool `json:"bl,omitempty"`
}

// VoterHash returns the hash every message carries: hex SHA-256 (first 16
// bytes) of the sorted voter names. Order and duplicates in voters do not
// matter to the hash; [ValidateVoters] rejects duplicates.
func VoterHash(voters []string) string {
	s := slices.Clone(voters)
	slices.Sort(s)
	s = slices.Compact(s)
	h := sha256.New()
	for _, v := range s {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Quorum returns ⌊n/2⌋+1.
func Quorum(n int) int { return n/2 + 1 }

// ValidateVoters checks a voter list: an odd number of distinct, non-empty
// names. The error names the offending entry.
func ValidateVoters(voters []string) error {
	if len(voters) == 0 {
		return errors.New("voters: empty list")
	}
	if len(voters)%2 == 0 {
		return fmt.Errorf("voters: %d names; an odd number is required (a quorum of an even list tolerates no more failures than the odd list one smaller)", len(voters))
	}
	seen := make(map[string]bool, len(voters))
	for i, v := range voters {
		if v == "" {
			return fmt.Errorf("voters[%d]: empty name", i)
		}
		if seen[v] {
			return fmt.Errorf("voters[%d]: duplicate name %q", i, v)
		}
		seen[v] = true
	}
	return nil
}
