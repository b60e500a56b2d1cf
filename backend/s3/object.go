package s3

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/b3df926d/leaderelection/lock"
)

// maxObjectSize bounds what Get reads: a record is a few hundred bytes, and
// anything much larger was not written by this package.
const maxObjectSize = 64 << 10

// object is the lock object's body.
//
// Update's compare-and-swap matches the ETag, which most stores compute as
// the MD5 of the body, so two writes must never produce the same body: a
// holder whose version is stale would otherwise match a later write (ABA).
// Generation counts writes since the object was created, and Nonce is random
// per write, so even an object deleted and created again never repeats a
// body.
type object struct {
	Generation uint64       `json:"generation"`
	Nonce      string       `json:"nonce"`
	Record     *lock.Record `json:"record"`
}

func encodeObject(generation uint64, rec lock.Record) ([]byte, error) {
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return nil, err
	}
	return json.Marshal(object{Generation: generation, Nonce: hex.EncodeToString(nonce[:]), Record: &rec})
}

// decodeObject parses a body; the error says what is wrong with it.
func decodeObject(raw []byte) (*object, error) {
	var o object
	if err := json.Unmarshal(raw, &o); err != nil {
		return nil, err
	}
	switch {
	case o.Record == nil:
		return nil, errors.New(`no "record" field`)
	case o.Generation == 0:
		return nil, errors.New(`no "generation" field`)
	}
	return &o, nil
}

// errTooLarge is the cause of a corrupt-record error for an oversized object.
var errTooLarge = fmt.Errorf("object is larger than %d bytes", maxObjectSize)
