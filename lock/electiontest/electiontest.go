// Package electiontest holds the elector scenarios every lock backend runs
// against its real store, beside lock/locktest's conformance suite of the
// lock itself, in the manner of gocloud.dev's drivertest: a backend's test
// gives RunScenarios a function that makes a fresh Harness per scenario,
// and a scenario that needs a capability the harness lacks
// (locktest.Deleter, locktest.Blocker, locktest.Cutter, locktest.Refuser)
// or the lock lacks
// (lock.Watcher) is skipped, so that every backend runs every scenario it
// can. Each scenario runs three electors on one record and checks with a
// Tracker that two of them never lead at once and that terms strictly
// increase.
package electiontest

import (
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/lock"
)

// Harness makes the locks of one scenario on a real store. It may also be
// a locktest.Deleter, a locktest.Blocker, a locktest.Cutter and a
// locktest.Refuser.
type Harness interface {
	// NewLock returns a lock on the record called name for candidate id,
	// with client state of its own, as a separate process would have.
	NewLock(t *testing.T, name, id string) lock.Interface
}

// HarnessMaker returns a fresh Harness for the scenario t, cleaned up
// when t ends (t.Cleanup). Harnesses may share one server.
type HarnessMaker func(t *testing.T) Harness

// Options tune the scenarios for a backend. The zero value is ready.
type Options struct {
	// LeaseDuration, RenewDeadline and RetryPeriod of every candidate
	// (default 3s, 2s, 1s: the fastest the elector allows, with a 1s
	// safety margin).
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
	// Wait bounds each wait for a leader (default 30s).
	Wait time.Duration
	// HandOvers is how many term-limit hand-overs TermLimitMovesLeadership
	// watches (default 10).
	HandOvers int
	// Only, if set, names the scenarios to run (default: all).
	Only []string
}

func (o Options) withDefaults() Options {
	if o.LeaseDuration <= 0 {
		o.LeaseDuration, o.RenewDeadline, o.RetryPeriod = 3*time.Second, 2*time.Second, time.Second
	}
	if o.Wait <= 0 {
		o.Wait = 30 * time.Second
	}
	if o.HandOvers <= 0 {
		o.HandOvers = 10
	}
	return o
}

// RunScenarios runs the elector scenarios, each on a harness newHarness
// makes for it, with three candidates on one record:
//
//   - TermLimitMovesLeadership: with TermLimit, leadership moves to another
//     candidate at nearly every hand-over (at least 80%).
//   - KilledLeaderIsReplacedAfterLeaseExpires: a leader that dies without
//     releasing is replaced by another candidate with the next term, never
//     before the lease it last renewed has expired.
//   - ReleaseHandsOverThroughWatch (lock.Watcher only): with a lease far
//     longer than the scenario waits, each of three graceful releases is
//     taken over at once: only the watch can have woken the follower.
//   - ClientGoElectorHandsOverToOurs: client-go's own elector runs on the
//     lock: two of its candidates lead in turn through a release, and this
//     module's elector takes the released record over with the next term.
//   - DeletedRecordUnderLeader (Deleter): the record is deleted under a
//     leader with two followers. Nobody starts before the old leader has
//     stopped, the next term is the last one + 1, and a new leader comes.
//   - DeletedRecordWithALaggingFollower (Deleter): a follower that polls
//     misses a hand-over (it last read the term before), then the record is
//     deleted under the new leader. The term after the deletion is above
//     every term used: no term is held by two identities.
//   - DeletedRecordRecreatedByAFollowerThatMissedATerm (Deleter): every read
//     of a follower falls while the record is gone, across a hand-over: it
//     misses a term, and after a second deletion recreates the record
//     with "the last term it saw + 1" before the current leader's next
//     renewal. That leader replaces the record with its own term, and the
//     follower leads only later, with a higher term: never two leaders, no
//     term held twice.
//   - ReleaseThenCutOffThenTakeOver (Cutter): a graceful release hands
//     over to another candidate before the released lease would have run
//     out; a leader cut off from the store steps down, Run returns
//     ErrLeaseLost, and the third candidate takes over only after the lease
//     the cut-off leader last renewed has expired.
//   - StoreOutageStepsTheLeaderDown (Blocker): the store stops answering
//     every candidate; the leader steps down (Run returns ErrLeaseLost),
//     nobody leads while the store is out, and once it answers again a
//     candidate leads with a higher term.
//   - RecoverRidesOutAStoreOutage (Blocker; the longer outage needs a
//     Refuser): with Config.Recover, an outage shorter than the lease (the
//     store hanging) and one longer (the store refusing): the leader's gate
//     closes at its renew deadline, its function keeps running, and after
//     the outage it leads again in the same term (gate reopened, function
//     never restarted) while nobody else leads.
//   - RecoverEndsTheTermAfterATakeover (Cutter): with Config.Recover, the
//     leader alone is cut off; another candidate takes over after the
//     lease, the gates never open at once, and when the old leader
//     reaches the store again its term ends as a lost lease (Run returns
//     ErrLeaseLost).
func RunScenarios(t *testing.T, newHarness HarnessMaker, opts Options) {
	t.Helper()
	o := opts.withDefaults()
	run := func(name string, f func(t *testing.T, h Harness, o Options)) {
		if len(o.Only) == 0 || slices.Contains(o.Only, name) {
			t.Run(name, func(t *testing.T) { f(t, newHarness(t), o) })
		}
	}
	run("TermLimitMovesLeadership", termLimitMovesLeadership)
	run("KilledLeaderIsReplacedAfterLeaseExpires", killedLeaderIsReplacedAfterLeaseExpires)
	run("ReleaseHandsOverThroughWatch", releaseHandsOverThroughWatch)
	run("ClientGoElectorHandsOverToOurs", clientGoElectorHandsOverToOurs)
	run("DeletedRecordUnderLeader", needs(deletedRecordUnderLeader))
	run("DeletedRecordWithALaggingFollower", needs(deletedRecordWithALaggingFollower))
	run("DeletedRecordRecreatedByAFollowerThatMissedATerm", needs(deletedRecordRecreatedByAFollowerThatMissedATerm))
	run("ReleaseThenCutOffThenTakeOver", needs(releaseThenCutOffThenTakeOver))
	run("StoreOutageStepsTheLeaderDown", needs(storeOutageStepsTheLeaderDown))
	run("RecoverRidesOutAStoreOutage", needs(recoverRidesOutAStoreOutage))
	run("RecoverEndsTheTermAfterATakeover", needs(recoverEndsTheTermAfterATakeover))
}

// needs adapts a scenario that needs the capability C of its harness: it
// skips the scenario if the harness lacks it.
func needs[C any](f func(t *testing.T, h Harness, c C, o Options)) func(t *testing.T, h Harness, o Options) {
	return func(t *testing.T, h Harness, o Options) {
		c, ok := h.(C)
		if !ok {
			t.Skipf("the harness is not a %v", reflect.TypeFor[C]())
		}
		f(t, h, c, o)
	}
}
