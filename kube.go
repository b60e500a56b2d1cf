package leaderelection

import (
	"context"

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

// isLease reports whether l stores its record in a Kubernetes Lease (whole
// seconds), for Validate: nil (the Lease Run creates), backend/k8s, or
// client-go's own LeaseLock.
func isLease(l lock.Interface) bool {
	switch l.(type) {
	case nil, *k8s.Lock, *resourcelock.LeaseLock:
		return true
	}
	return false
}
