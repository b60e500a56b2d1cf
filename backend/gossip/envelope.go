package gossip

import (
	"encoding/json"
	"errors"
	"fmt"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
)

// kind is an envelope's message type.
type kind uint8

const (
	kindInvalid kind = iota
	// Requests, answered by voters.
	kindPrepare
	kindAccept
	// Replies, matched to their request by id.
	kindPromise
	kindAccepted
	kindNack
	kindRefused // the receiver would not consider the request (voter list, election)
	// kindPush carries a chosen value to every member; nobody answers.
	kindPush
	// kindQuery asks a voter what it accepted, promising nothing (a read);
	// kindReport is the answer.
	kindQuery
	kindReport
)

var kindNames = [...]string{"invalid", "prepare", "accept", "promise", "accepted", "nack", "refused", "push", "query", "report"}

func (k kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", k)
}

func (k kind) isReply() bool { return (k >= kindPromise && k <= kindRefused) || k == kindReport }

// envelopeVersion is the first byte of every message; a node refuses
// versions it does not know.
const envelopeVersion = 1

// envelope is one message between candidates: memberlist's NotifyMsg gives
// no sender and SendReliable no reply, so the envelope names both, and a
// reply carries its request's id.
type envelope struct {
	Kind kind   `json:"k"`
	ID   uint64 `json:"id,omitempty"` // request id; a reply carries its request's
	// From is the sender's identity, Inc its process incarnation (random
	// per start), Addr where it listens ("host:port"), so that replies
	// reach the very process that asked even if two claim one name.
	From     string `json:"f"`
	Inc      uint64 `json:"i"`
	Addr     string `json:"a"`
	Election string `json:"e"`
	// Voters is the hash of the sender's voter list (casp.VoterHash).
	Voters string      `json:"v"`
	Ballot casp.Ballot `json:"b"`
	// Took, on a push, is how long the write took its proposer, in
	// microseconds: followers size their turns by it (see Lock.turn).
	Took int64 `json:"tk,omitempty"`
	// Age, on a promise or a report, is how long ago (in microseconds, by
	// the voter's clock) the voter accepted the value it carries; zero if
	// it does not know (a value loaded from its StateDir). The write began
	// no later than that: see Lock.Age.
	Age int64 `json:"ag,omitempty"`
	// Gift, on a release's push to the candidate whose turn is first, is
	// the prepare phase the release's accepts ran for it
	// (casp.Proposer.StartFor): its take-over round starts with its
	// accepts.
	Gift *casp.Prepared `json:"g,omitempty"`
	// Payload is a casp.Message (requests and replies), a casp.Value
	// (push), or a reason (refused).
	Payload json.RawMessage `json:"p,omitempty"`
}

// kindOf is the envelope kind for a protocol message.
func kindOf(k casp.Kind) kind {
	switch k {
	case casp.KindPrepare:
		return kindPrepare
	case casp.KindAccept:
		return kindAccept
	case casp.KindPromise:
		return kindPromise
	case casp.KindAccepted:
		return kindAccepted
	case casp.KindNack:
		return kindNack
	case casp.KindQuery:
		return kindQuery
	case casp.KindReport:
		return kindReport
	}
	return kindInvalid
}

func (e *envelope) encode() ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return append([]byte{envelopeVersion}, b...), nil
}

var errBadEnvelope = errors.New("not a message of this protocol")

func decodeEnvelope(b []byte) (*envelope, error) {
	if len(b) < 2 || b[0] != envelopeVersion {
		return nil, errBadEnvelope
	}
	var e envelope
	if err := json.Unmarshal(b[1:], &e); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadEnvelope, err)
	}
	if e.Kind == kindInvalid || int(e.Kind) >= len(kindNames) {
		return nil, fmt.Errorf("%w: kind %d", errBadEnvelope, e.Kind)
	}
	return &e, nil
}
