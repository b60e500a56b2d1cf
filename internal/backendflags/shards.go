package backendflags

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/lock"
)

// ShardLocks returns a shard.Options.Locks for the shard set named set,
// over the chosen backend's companion records of the lock (CompanionLock):
// the record "<set>-slot-3" is the companion "-slot-3". None reads from a
// cache, so every handle may serve as a fresh one. On Kubernetes each
// handle is a Lease through a client of its own, so that no handle's
// requests wait behind another's in client-go's rate limiter (with one
// client, a renewal queued behind a membership change's burst of barrier
// reads missed its RenewDeadline); it records no events. closeAll closes
// the handles made, once the set's Run has returned. The gossip backend
// has no companion records: every call fails, naming it.
func (f *Flags) ShardLocks(id string, opt *leaderelection.Option, set string) (locks func(name string, fresh bool) (lock.Interface, error), closeAll func()) {
	var mu sync.Mutex
	var made []lock.Interface
	locks = func(name string, _ bool) (lock.Interface, error) {
		mu.Lock()
		defer mu.Unlock()
		suffix, ok := strings.CutPrefix(name, set)
		if !ok {
			return nil, fmt.Errorf("record %q is not of the shard set %q", name, set)
		}
		l, err := f.CompanionLock(context.Background(), id, opt, suffix)
		if err != nil {
			return nil, err
		}
		if l == nil { // a Lease, through the client CompanionLock just made
			if l, err = k8s.New(context.Background(), k8s.Options{Client: opt.KubeClient, Namespace: opt.LeaseLockNamespace,
				Name: opt.LeaseLockName + suffix, Identity: id, DisableEvents: true}); err != nil {
				return nil, fmt.Errorf("--backend=k8s: %w", err)
			}
		}
		made = append(made, l)
		return l, nil
	}
	closeAll = func() {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range made {
			switch c := l.(type) {
			case io.Closer:
				_ = c.Close()
			case interface{ Close() }:
				c.Close()
			}
		}
		made = nil
	}
	return locks, closeAll
}
