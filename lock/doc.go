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
//
// Backends that can notify also implement [Watcher].
package lock
