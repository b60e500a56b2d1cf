package leaderelection

import (
	"context"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/b3df926d/leaderelection/lock/locktest"
)

// A Lease stores whole seconds and client-go truncates them, so a
// fractional LeaseDuration that truncates to RenewDeadline or less is
// refused for a Lease, and allowed for a lock that keeps the exact value.
func TestValidateLeaseDurationInWholeSeconds(t *testing.T) {
	base := Option{
		ID: "a", Run: func(context.Context) {}, Port: NoHealthServer,
		LeaseDuration: 2500 * time.Millisecond, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
	}
	lease := base
	lease.KubeClient, lease.LeaseLockName, lease.LeaseLockNamespace = fake.NewClientset(), "lk", "ns"
	err := lease.Validate()
	if err == nil || !strings.Contains(err.Error(), "LeaseDuration") {
		t.Errorf("Validate with a Lease and LeaseDuration 2.5s, RenewDeadline 2s = %v, want an error naming LeaseDuration", err)
	}
	memory := base
	memory.Lock = locktest.NewMemoryStore("m").Lock("a")
	if err := memory.Validate(); err != nil {
		t.Errorf("Validate with a memory lock: %v", err)
	}
}
