package lock

import (
	"errors"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Sentinel errors, for errors.Is. Errors returned by backends wrap them and
// also carry a Kubernetes API status, so client-go's elector (which tests with
// k8s.io/apimachinery/pkg/api/errors) understands them too.
var (
	// ErrConflict: the store no longer holds the version this lock last saw,
	// or Create found a record already there. Another writer won the race.
	ErrConflict = errors.New("lock: conflict")
	// ErrNotFound: no record is stored.
	ErrNotFound = errors.New("lock: record not found")
	// ErrCorrupt: the stored record cannot be decoded. It is left in place.
	ErrCorrupt = errors.New("lock: corrupt record")
	// ErrNeverWritten: no record is stored, and the store can prove that
	// none ever was for this lock, so it cannot have just been deleted
	// under a working leader. Errors that wrap it are also not-found
	// ([IsNotFound]). Only a store that knows its whole history returns
	// it (file, S3 and git, by a marker beside the record; gossip, when
	// every voter started with an empty StateDir and has taken part in no
	// write; the in-memory store); the others return plain not-found. A
	// Create made after a Get that returned it must fail as a conflict if
	// a record was written since, even one deleted again.
	ErrNeverWritten = errors.New("lock: no record was ever written")
)

// IsConflict reports whether err means another writer won a compare-and-swap
// race (including Create finding an existing record).
func IsConflict(err error) bool {
	return errors.Is(err, ErrConflict) || apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err)
}

// IsNotFound reports whether err means no record is stored.
func IsNotFound(err error) bool {
	return errors.Is(err, ErrNotFound) || apierrors.IsNotFound(err)
}

// NewConflict returns an error for a lost race on the lock described by desc
// (for example "s3://bucket/key"). cause may be nil.
func NewConflict(desc string, cause error) error {
	return &statusError{desc: desc, sentinel: ErrConflict, reason: metav1.StatusReasonConflict, code: http.StatusConflict, cause: cause}
}

// NewNotFound returns an error for a missing record of the lock described by
// desc.
func NewNotFound(desc string) error {
	return &statusError{desc: desc, sentinel: ErrNotFound, reason: metav1.StatusReasonNotFound, code: http.StatusNotFound}
}

// NewNeverWritten returns a not-found error for the lock described by desc
// that also wraps [ErrNeverWritten]: the store can prove that no record was
// ever written for this lock. A store must not return it once a record has
// been written, even after the record was deleted.
func NewNeverWritten(desc string) error {
	return &statusError{desc: desc, sentinel: ErrNotFound, reason: metav1.StatusReasonNotFound, code: http.StatusNotFound, cause: ErrNeverWritten}
}

// NewCorrupt returns an error for an undecodable record in the store object
// named by desc.
func NewCorrupt(desc string, cause error) error {
	if cause == nil {
		return fmt.Errorf("%s: %w", desc, ErrCorrupt)
	}
	return fmt.Errorf("%s: %w: %w", desc, ErrCorrupt, cause)
}

// statusError is both a sentinel-wrapping error and an apimachinery APIStatus.
type statusError struct {
	desc     string
	sentinel error
	reason   metav1.StatusReason
	code     int32
	cause    error
}

func (e *statusError) Error() string {
	if e.cause == nil {
		return fmt.Sprintf("%s: %v", e.desc, e.sentinel)
	}
	return fmt.Sprintf("%s: %v: %v", e.desc, e.sentinel, e.cause)
}

func (e *statusError) Is(target error) bool { return target == e.sentinel }

func (e *statusError) Unwrap() error { return e.cause }

// Status makes the error an apimachinery APIStatus.
func (e *statusError) Status() metav1.Status {
	return metav1.Status{Status: metav1.StatusFailure, Reason: e.reason, Code: e.code, Message: e.Error()}
}
