package leaderelection

import (
	"context"
	"time"

	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/lock"
)

// newKubeLock is the lock used when Option.Lock is nil: a Lease on
// LeaseLockNamespace/LeaseLockName through KubeClient (backend/k8s:
// client-go's LeaseLock with a watch and events). The caller closes it.
func newKubeLock(ctx context.Context, opt Option) (*k8s.Lock, error) {
	return k8s.New(ctx, k8s.Options{
		Client:    opt.KubeClient,
		Namespace: opt.LeaseLockNamespace,
		Name:      opt.LeaseLockName,
		Identity:  opt.ID,
		Logger:    opt.Logger,
	})
}

// durationRules returns the store's own rules on the durations for l: its
// lock.DurationRules if it has them, a Lease's for the Leases whose lock
// cannot say so itself (nil: the one newKubeLock will make, which Option
// validation checks before it exists; client-go's LeaseLock), else nil.
func durationRules(l lock.Interface) lock.DurationRules {
	switch l := l.(type) {
	case lock.DurationRules:
		return l
	case nil, *resourcelock.LeaseLock:
		return leaseRules{}
	}
	return nil
}

// leaseRules are a Kubernetes Lease's rules (k8s.ValidateDurations).
type leaseRules struct{}

func (leaseRules) ValidateDurations(leaseDuration, renewDeadline, _ time.Duration) error {
	return k8s.ValidateDurations(leaseDuration, renewDeadline)
}
