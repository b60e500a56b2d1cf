//go:build unix

package main

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/b3df926d/leaderelection/lock"
)

// lastRunSuffix names run --once-per's companion record: the lock's store
// object's name followed by it (leader.json.last-run, the Lease
// NAME.last-run).
const lastRunSuffix = ".last-run"

// minOncePer is the shortest --once-per: copies of one firing count as one
// period if they started within half a period of each other, and the
// file, S3 and git records keep times to the second.
const minOncePer = 10 * time.Second

// oncePer is run --once-per: the companion record of the lock's last run,
// read and written only while this copy holds the lock, and the rule that
// decides whether this copy's period already has a success (docs/cli.md,
// "Once per period").
type oncePer struct {
	period  time.Duration
	started time.Time      // when this copy started: its period's reference
	record  lock.Interface // the companion record, in the lock's store
}

// lastRun is a run of the command, as the companion record holds it.
type lastRun struct {
	id       string    // HolderIdentity: the copy that ran it
	term     int64     // LeaderTransitions: the term it ran in
	started  time.Time // AcquireTime: when that copy started
	finished time.Time // RenewTime: when the command exited
	// status is the command's exit status. It is stored as
	// LeaseDurationSeconds = status + 1, because a Kubernetes Lease that
	// names a holder needs a positive duration: 1 means success.
	status int
}

func (r lastRun) toRecord() lock.Record {
	return lock.Record{
		HolderIdentity:       r.id,
		LeaderTransitions:    int(r.term),
		AcquireTime:          metav1.NewTime(r.started),
		RenewTime:            metav1.NewTime(r.finished),
		LeaseDurationSeconds: r.status + 1,
	}
}

func lastRunFrom(rec *lock.Record) lastRun {
	return lastRun{
		id:       rec.HolderIdentity,
		term:     int64(rec.LeaderTransitions),
		started:  rec.AcquireTime.Time,
		finished: rec.RenewTime.Time,
		status:   rec.LeaseDurationSeconds - 1,
	}
}

// doneThisPeriod reads the last run and reports whether it succeeded in
// this copy's period: it started no earlier than half a period before
// this copy did (a later start counts too: a newer period is done). Half
// a period is the widest margin for copies of one cron firing whose
// starts differ by jitter and clock skew, either way, while the next
// firing, a whole period later, runs again. Without a record, nothing
// ran.
func (o *oncePer) doneThisPeriod(ctx context.Context) (lastRun, bool, error) {
	rec, _, err := o.record.Get(ctx)
	if lock.IsNotFound(err) {
		return lastRun{}, false, nil
	}
	if err != nil {
		return lastRun{}, false, fmt.Errorf("reading the last run: %w", err)
	}
	last := lastRunFrom(rec)
	return last, last.status == 0 && last.started.After(o.started.Add(-o.period/2)), nil
}

// recordRun writes run as the last run, compare-and-swap, while this copy
// still holds the lock, so that the next holder reads it. A record of a
// later term is kept: this copy's term has ended.
func (o *oncePer) recordRun(ctx context.Context, run lastRun) error {
	rec, _, err := o.record.Get(ctx)
	switch {
	case lock.IsNotFound(err):
		err = o.record.Create(ctx, run.toRecord())
	case err != nil:
	case int64(rec.LeaderTransitions) > run.term:
		return fmt.Errorf("%s holds term %d's run, later than this term %d", o.record.Describe(), rec.LeaderTransitions, run.term)
	default:
		err = o.record.Update(ctx, run.toRecord())
	}
	if err != nil {
		return fmt.Errorf("recording the run in %s: %w", o.record.Describe(), err)
	}
	return nil
}
