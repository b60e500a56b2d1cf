package lock

import (
	"os"
	"strconv"
)

// DefaultIdentity is the candidate identity every backend and RunOrDie use
// when none is given: $POD_NAME if set (the pod's name is unique in its
// namespace, and stable in a StatefulSet), else "<hostname>_<pid>".
//
// The process id is part of the fallback because the host name alone is not
// unique among candidates: replicas on one host, which is the file backend's
// whole use case, would all claim the same identity, and a candidate that
// reads its own identity as the holder believes the lock is already its own.
// Two processes on one host never share a pid at the same time. The price is
// that a restarted process is a new candidate, which waits out the old
// identity's lease (or finds it released) instead of resuming it; that is
// the safe choice, since the old process may still be running.
func DefaultIdentity() string {
	if id := os.Getenv("POD_NAME"); id != "" {
		return id
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return host + "_" + strconv.Itoa(os.Getpid())
}
