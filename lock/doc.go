// Package lock defines the contract every leader-election backend implements.
//
// A lock is client-go's resourcelock.Interface (see [Interface]), so every
// backend in this module also works under client-go's leaderelection.RunOrDie
// and controller-runtime's manager, and client-go's own LeaseLock works under
// this module's elector.
//
// The contract beyond the six methods:
//
//   - Get remembers the store's version token (resourceVersion, ETag, commit
//     id, counter). Update succeeds only if the store still holds that version
//     (compare-and-swap); a successful Create or Update remembers the version it
//     wrote, so a leader can renew without reading first. Create succeeds only
//     if no record exists.
//   - A lost race returns an error for which [IsConflict] is true; a missing
//     record one for which [IsNotFound] is true. Both are also recognised by
//     k8s.io/apimachinery/pkg/api/errors, which is what client-go's elector
//     tests for.
//   - A store that can prove no record was ever written for the lock (not
//     merely that none is stored now) may say so with [NewNeverWritten];
//     after a deletion it must return a plain not-found. The elector lets a
//     candidate create the first record at once only on such proof, and
//     otherwise waits in case the record was just deleted under a working
//     leader.
//   - A record that cannot be decoded is an error that wraps [ErrCorrupt] and
//     names the store object. It is never silently overwritten.
//   - Every call honours its context.
//   - A Get may be stale: it may return a record that another handle has
//     since replaced, for a while. The S3 lock serves a follower the live
//     lease it last read until that lease could have expired or its
//     release check is due; the gossip lock serves the newest record pushed
//     to it; the k8s lock answers from its watch's latest object. What a
//     stale Get costs is a lost race, never a second leader: a take-over is
//     an Update from the version read, so one based on a replaced record
//     fails as a conflict, and the elector reads again. What it delays is a
//     follower noticing a release or a new holder. So the elector relies on
//     compare-and-swap for safety, on leases measured from its own reads
//     (dated back by [Aged], which must never overstate) for expiry, and on
//     [Watcher] signals or its next poll for freshness; never on a Get
//     being current (lock/locktest: Options.StaleReads).
//
// Backends that can notify also implement [Watcher]. The optional
// interfaces ([Watcher], [WatchState], [Aged], [ReadinessChecker]) have
// conformance tests in lock/locktest, and the elector's scenarios on a
// backend are in lock/electiontest. A store that limits the elector's
// durations (a Lease's whole seconds) says so with [DurationRules].
package lock
