package main

import (
	"context"
	"errors"
	"time"

	"github.com/b3df926d/leaderelection/lock"
)

// timedLock reports when each successful write of this candidate's own
// record (an acquisition or a renewal) began. The elector steps down
// RenewDeadline after the start of its last good renewal; run passes the
// same deadline to the supervisor, which stops the job on its own if
// leaderelection is paused or wedged and cannot step down.
type timedLock struct {
	lock.Interface
	good    func(start time.Time)
	corrupt func(err error) // a Get found the record corrupt
}

// Age passes lock.Aged through (false where l does not know ages), so
// that the elector dates records as it would without the wrapper.
func (l *timedLock) Age(raw []byte) (time.Duration, bool) {
	if a, ok := l.Interface.(lock.Aged); ok {
		return a.Age(raw)
	}
	return 0, false
}

// ValidateDurations passes lock.DurationRules through (nil where l has no
// rules of its own), so that the elector refuses durations l's store
// cannot keep (a Lease's whole seconds) as it would without the wrapper.
func (l *timedLock) ValidateDurations(leaseDuration, renewDeadline, retryPeriod time.Duration) error {
	if r, ok := l.Interface.(lock.DurationRules); ok {
		return r.ValidateDurations(leaseDuration, renewDeadline, retryPeriod)
	}
	return nil
}

// watchingLock is a timedLock over a lock.Watcher, which the elector uses
// to wake at once on changes; it passes lock.WatchState through (a watch
// without it is always trusted), so that the elector polls while a
// network watch is down.
type watchingLock struct {
	*timedLock
	w lock.Watcher
}

func (l watchingLock) Changes(ctx context.Context) <-chan struct{} { return l.w.Changes(ctx) }

func (l watchingLock) Watching() bool {
	if ws, ok := l.w.(lock.WatchState); ok {
		return ws.Watching()
	}
	return true
}

// The lock's own readiness check (lock.ReadinessChecker: a gossip voter
// recovering its record) stays on /readyz through the wrapper.
type (
	readyTimedLock struct {
		*timedLock
		lock.ReadinessChecker
	}
	readyWatchingLock struct {
		watchingLock
		lock.ReadinessChecker
	}
)

// timeRenewals wraps l, calling good with the start of every successful
// write that names this candidate as holder, and corrupt with every read
// that found the record corrupt. The wrapper has the optional interfaces
// of package lock that l has (Watcher, WatchState, Aged,
// ReadinessChecker, DurationRules), with l's behaviour.
func timeRenewals(l lock.Interface, good func(start time.Time), corrupt func(error)) lock.Interface {
	t := &timedLock{Interface: l, good: good, corrupt: corrupt}
	rc, ready := l.(lock.ReadinessChecker)
	if w, ok := l.(lock.Watcher); ok {
		if ready {
			return readyWatchingLock{watchingLock{t, w}, rc}
		}
		return watchingLock{t, w}
	}
	if ready {
		return readyTimedLock{t, rc}
	}
	return t
}

func (l *timedLock) Create(ctx context.Context, rec lock.Record) error {
	start := time.Now()
	err := l.Interface.Create(ctx, rec)
	l.report(start, rec, err)
	return err
}

func (l *timedLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	rec, raw, err := l.Interface.Get(ctx)
	if errors.Is(err, lock.ErrCorrupt) && l.corrupt != nil {
		l.corrupt(err)
	}
	return rec, raw, err
}

func (l *timedLock) Update(ctx context.Context, rec lock.Record) error {
	start := time.Now()
	err := l.Interface.Update(ctx, rec)
	l.report(start, rec, err)
	return err
}

func (l *timedLock) report(start time.Time, rec lock.Record, err error) {
	if err == nil && rec.HolderIdentity != "" && rec.HolderIdentity == l.Identity() {
		l.good(start)
	}
}
