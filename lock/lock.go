package lock

import (
	"context"

	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Interface is the lock a backend provides. It is client-go's
// resourcelock.Interface, so locks move freely between this module's elector,
// client-go's elector and controller-runtime.
type Interface = resourcelock.Interface

// Record is the leader-election record a lock stores.
type Record = resourcelock.LeaderElectionRecord

// Watcher is implemented by locks whose store can notify about changes.
//
// Changes returns a channel that receives a value soon after the stored record
// may have changed (a signal may also be spurious: the receiver reads the
// record with Get to learn what changed). Signals are coalesced: a slow reader
// sees at least one signal after the last change, not one per change. The
// channel is closed when ctx is done. Implementations re-establish broken
// watches themselves, and signal after re-establishing one, because a change
// may have been missed meanwhile.
type Watcher interface {
	Changes(ctx context.Context) <-chan struct{}
}
