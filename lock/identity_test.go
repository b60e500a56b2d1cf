package lock_test

import (
	"os"
	"strconv"
	"testing"

	"github.com/b3df926d/leaderelection/lock"
)

func TestDefaultIdentityIsPodName(t *testing.T) {
	t.Setenv("POD_NAME", "ctrl-7d9f-abcde")
	if got := lock.DefaultIdentity(); got != "ctrl-7d9f-abcde" {
		t.Fatalf("DefaultIdentity() = %q with POD_NAME set, want the pod name", got)
	}
}

// Replicas on one host (the file backend's use case) must not share an
// identity, so the fallback is host name and process id.
func TestDefaultIdentityWithoutPodNameIsHostAndPid(t *testing.T) {
	t.Setenv("POD_NAME", "")
	host, err := os.Hostname()
	if err != nil {
		t.Skip("no host name:", err)
	}
	want := host + "_" + strconv.Itoa(os.Getpid())
	if got := lock.DefaultIdentity(); got != want {
		t.Fatalf("DefaultIdentity() = %q, want %q", got, want)
	}
}
