package electiontest

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/b3df926d/leaderelection/internal/hold"
	"github.com/b3df926d/leaderelection/lock"
)

// faultLock is the one lock wrapper of the scenarios: a candidate's lock
// that cannot watch (the candidate polls), with faults the scenario
// switches while the candidate runs.
type faultLock struct {
	lock.Interface
	// stalled: every call fails, as if the store were out of the
	// candidate's reach; it misses whatever happens meanwhile.
	stalled atomic.Bool
	// blind: Get reports no record (as if every read fell while the
	// record was gone) and writes fail.
	blind atomic.Bool
	// updates holds Updates, as a renewal slowed down on its way to the
	// store would be, until resumed or their context ends; its Hold
	// returns once no Update that went through before is still running.
	updates hold.Gate

	// blindReads and blindWrites count the calls made while blind;
	// created is set once a Create has succeeded.
	blindReads, blindWrites atomic.Int32
	created                 atomic.Bool
}

// startFaulty starts candidate id on a faultLock, returned for the
// scenario to switch its faults.
func (el *Election) startFaulty(id string) *faultLock {
	el.t.Helper()
	f := &faultLock{}
	el.start(id, func(l lock.Interface) lock.Interface { f.Interface = l; return f })
	return f
}

func (l *faultLock) unreachable() error {
	return fmt.Errorf("%s: the test keeps this candidate from reaching the store", l.Describe())
}

// writeFault is the fault a write meets, if any.
func (l *faultLock) writeFault() error {
	if l.blind.Load() {
		l.blindWrites.Add(1)
		return l.unreachable()
	}
	if l.stalled.Load() {
		return l.unreachable()
	}
	return nil
}

func (l *faultLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	if l.blind.Load() {
		l.blindReads.Add(1)
		return nil, nil, lock.NewNotFound(l.Describe())
	}
	if l.stalled.Load() {
		return nil, nil, l.unreachable()
	}
	return l.Interface.Get(ctx)
}

func (l *faultLock) Create(ctx context.Context, rec lock.Record) error {
	if err := l.writeFault(); err != nil {
		return err
	}
	err := l.Interface.Create(ctx, rec)
	if err == nil {
		l.created.Store(true)
	}
	return err
}

func (l *faultLock) Update(ctx context.Context, rec lock.Record) error {
	if err := l.writeFault(); err != nil {
		return err
	}
	err := l.updates.Do(ctx, func() error { return l.Interface.Update(ctx, rec) })
	if err != nil && l.updates.Held() && ctx.Err() != nil {
		return fmt.Errorf("%s: update held by the test: %w", l.Describe(), err)
	}
	return err
}
