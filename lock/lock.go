package lock

import (
	"context"
	"time"

	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Interface is the lock a backend provides. It is client-go's
// resourcelock.Interface, so locks move freely between this module's elector,
// client-go's elector and controller-runtime.
type Interface = resourcelock.Interface

// Record is the leader-election record a lock stores.
type Record = resourcelock.LeaderElectionRecord

// IsClaim reports whether rec is a claim: a record whose writer does not
// lead yet. It names a holder and has a RenewTime but no AcquireTime, which
// its writer sets when it confirms the claim. The elector writes claims
// where it may not know the term count (after a record vanished, or on a
// lock it never saw a record of); a record written by hand with neither
// time is not a claim. Stores keep an empty AcquireTime empty
// (locktest: ClaimRoundTrips).
func IsClaim(rec Record) bool {
	return rec.HolderIdentity != "" && rec.AcquireTime.IsZero() && !rec.RenewTime.IsZero()
}

// Aged is optionally implemented by a lock that can tell how old a record
// it returned is, by durations measured on the store's side rather than by
// the timestamps in the record (which are the writer's clock). The elector
// measures a lease from its own read of a changed record; from a lock with
// Aged it measures it from that many earlier, so that a renewal it learns
// late (its writer was cut off before announcing it: a crash mid-write)
// expires when it would have had it been seen at once, not a whole lease
// after the late read.
type Aged interface {
	// Age is called right after Get returned raw. It returns a duration no
	// longer than the time since the write that stored raw began, and
	// true; false if it does not know. An Age too long would let a
	// candidate take over a lease that is still held: when unsure,
	// report less, or false.
	Age(raw []byte) (time.Duration, bool)
}

// Watcher is implemented by locks whose store can notify about changes.
//
// Changes returns a channel that receives a value soon after the stored record
// may have changed (a signal may also be spurious: the receiver reads the
// record with Get to learn what changed). Signals are coalesced: a slow reader
// sees at least one signal after the last change, not one per change. Every
// change made after Changes returns is signalled, however soon after (a
// watcher takes its starting point before it returns), so a receiver
// subscribes first and reads after: then no change between its read and the
// watch's start goes unseen. The channel is closed when ctx is done. Implementations re-establish broken
// watches themselves, and signal after re-establishing one, because a change
// may have been missed meanwhile.
//
// A channel that is closed before ctx is done means the watch has ended for
// good: the receiver must poll from then on. A watch that is only down for
// now (the store unreachable, a watch being re-established) is reported
// through [WatchState], if the lock implements it.
type Watcher interface {
	Changes(ctx context.Context) <-chan struct{}
}

// WatchState is optionally implemented by a [Watcher] whose watch can be
// down for a while (a network watch being re-established). While Watching
// reports false, changes may go unsignalled and a receiver polls as if the
// lock could not watch. The lock signals on its Changes channels when the
// watch goes down (so receivers learn to poll) and, when it is back, if a
// change may have been missed meanwhile (lock/locktest:
// WatchStateFollowsTheStore).
//
// A Watcher without WatchState is trusted to signal every change while its
// channel is open.
type WatchState interface {
	Watcher
	// Watching reports whether changes are being signalled now.
	Watching() bool
}

// ReadinessChecker is optionally implemented by a lock whose handle can be
// unfit to take part for a while, though its process is healthy: a gossip
// voter that started without its record answers no other candidate until it
// has recovered it from the others. leaderelection.Run and
// leaderelection.NewHealthServer serve it on /readyz only (not /livez:
// restarting would start the recovery again), as the check
// /readyz/<ReadinessName>, so that a rolling restart waits for each such
// replica before restarting the next.
type ReadinessChecker interface {
	// ReadinessName names the check ("gossip").
	ReadinessName() string
	// Ready returns nil when the handle can take part, else why not.
	Ready() error
}

// DurationRules is optionally implemented by a lock whose store limits the
// elector's three durations beyond the elector's own rules (LeaseDuration >
// RenewDeadline > 1.2 × RetryPeriod, LeaseDuration and RetryPeriod at least
// 1s). The k8s lock does: a Lease stores its duration in whole seconds,
// which client-go's elector truncates, so a LeaseDuration of 2.5s with a 2s
// RenewDeadline would let a client-go follower take over while the leader
// still believes it leads.
//
// leaderelection.Config.Validate (and so NewElector), Option.Validate and
// Run apply it once the durations pass the elector's own rules, and report
// its error with theirs. A lock without it is bound by the elector's rules
// alone.
type DurationRules interface {
	// ValidateDurations returns nil if the store can keep a lease of
	// these durations safely, else an error naming the field to change
	// (LeaseDuration, RenewDeadline or RetryPeriod) and why.
	ValidateDurations(leaseDuration, renewDeadline, retryPeriod time.Duration) error
}
