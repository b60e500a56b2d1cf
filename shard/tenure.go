package shard

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/b3df926d/leaderelection/internal/renewtime"
	core "github.com/b3df926d/leaderelection/internal/shard"
	"github.com/b3df926d/leaderelection/lock"
)

// tenure is one holding of one slot, from taking it to releasing or
// losing it: the slot's lease, with the elector's rules (docs/elector.md):
// a renewal every RetryPeriod from the version last written, and a
// step-down timer that cancels ctx, and with it every shard's context,
// RenewDeadline after the last good write began. Its writer handle is
// used for nothing else, so that every write is a compare-and-swap from
// this tenure's own last write.
type tenure struct {
	opt    Options
	log    logr.Logger
	self   core.Member
	writer lock.Interface
	// ctx is the parent of every shard's context; cancelled at the
	// step-down.
	ctx      context.Context
	cancel   context.CancelFunc
	acquired metav1.Time

	mu       sync.Mutex // serialises the slot's writes
	ack      core.Ack   // what every write carries
	written  core.Ack   // what the last good write carried
	renewed  metav1.Time
	good     time.Time // start of the last good write
	deadline *time.Timer
	lost     chan struct{}
	lostOnce sync.Once
	why      string
	gone     bool // the last write found the record deleted

	stop chan struct{}
	done chan struct{} // closed when the renew loop has returned
}

// errSlotTaken: the slot was not free when this replica tried to take it.
var errSlotTaken = errors.New("slot taken")

// take takes slot k if it is free, by compare-and-swap from the record
// read just before, acknowledging generation known (no assignment: a
// join always opens a new generation).
func take(ctx context.Context, opt Options, log logr.Logger, k int, known int64) (*tenure, error) {
	name := slotName(opt.Name, k)
	w, err := opt.Locks(name, true)
	if err != nil {
		return nil, fmt.Errorf("Options.Locks(%q): %w", name, err)
	}
	start := time.Now()
	actx, cancel := context.WithTimeout(ctx, opt.RenewDeadline)
	defer cancel()
	rec, _, err := w.Get(actx)
	now := metav1.NewTime(start)
	self := core.Member{Slot: k, ID: opt.Identity}
	ack := core.Ack{Generation: known}
	next := heldRecord(opt.Identity, ack, opt.LeaseDuration, now, now)
	switch {
	case errors.Is(err, lock.ErrNeverWritten):
		err = w.Create(actx, next)
	case err != nil:
		return nil, err
	case decodeSlot(rec, k).State != core.Free:
		return nil, errSlotTaken
	default:
		ack.Generation = max(known, int64(rec.LeaderTransitions))
		next.LeaderTransitions = int(ack.Generation)
		err = w.Update(actx, next)
	}
	if err != nil {
		return nil, err
	}
	if time.Since(start) >= opt.RenewDeadline {
		// As old as a lease may be held without renewal: let it expire.
		return nil, fmt.Errorf("%s: taking the slot took %v", w.Describe(), time.Since(start))
	}
	t := &tenure{opt: opt, log: log.WithValues("slot", k), self: self, writer: w, acquired: now,
		ack: ack, written: ack, renewed: now, good: start, lost: make(chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{})}
	t.ctx, t.cancel = context.WithCancel(context.WithoutCancel(ctx))
	t.deadline = time.AfterFunc(opt.RenewDeadline-time.Since(start), func() {
		t.stepDown("no renewal succeeded within RenewDeadline")
	})
	go t.renewLoop()
	t.log.Info("Joined", "generation", known)
	return t, nil
}

// renewLoop renews every RetryPeriod until stopped or lost.
func (t *tenure) renewLoop() {
	defer close(t.done)
	tick := time.NewTicker(t.opt.RetryPeriod)
	defer tick.Stop()
	for {
		select {
		case <-t.stop:
			return
		case <-t.lost:
			return
		case <-tick.C:
			if err := t.write(); err != nil {
				t.log.V(2).Info("Renewal failed", "err", err)
			}
		}
	}
}

// acknowledge makes every write carry ack from now on, and writes it.
func (t *tenure) acknowledge(ack core.Ack) error {
	t.mu.Lock()
	t.ack = ack
	t.mu.Unlock()
	return t.write()
}

// durable reports whether the acknowledgement every write carries is in
// the store.
func (t *tenure) durable() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.written == t.ack
}

// write renews the slot with the current acknowledgement, bounded by the
// time left before the step-down. A conflict or a deleted record ends the
// tenure at once.
func (t *tenure) write() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isLost() {
		return errors.New("slot lost")
	}
	start := time.Now()
	left := t.opt.RenewDeadline - start.Sub(t.good)
	if left <= 0 {
		return errors.New("renew deadline passed")
	}
	ack := t.ack
	renewed := renewtime.Next(start, t.renewed)
	ctx, cancel := context.WithTimeout(t.ctx, left)
	defer cancel()
	err := t.writer.Update(ctx, heldRecord(t.self.ID, ack, t.opt.LeaseDuration, t.acquired, renewed))
	t.opt.Ownership.storeResult(err)
	switch {
	case lock.IsNotFound(err):
		t.gone = true
		t.stepDown("the slot record was deleted")
		return err
	case lock.IsConflict(err):
		t.stepDown("the slot was taken")
		return err
	case err != nil:
		return err
	}
	if t.isLost() {
		return nil // a late success does not undo a step-down
	}
	t.written, t.renewed, t.good = ack, renewed, start
	t.deadline.Stop()
	t.deadline = time.AfterFunc(t.opt.RenewDeadline-time.Since(start), func() {
		t.stepDown("no renewal succeeded within RenewDeadline")
	})
	return nil
}

// stepDown ends the tenure: every shard's context is cancelled. Safe to
// call more than once, from any goroutine.
func (t *tenure) stepDown(why string) {
	t.lostOnce.Do(func() {
		t.why = why
		close(t.lost)
		t.cancel()
		t.log.Info("Stepped down", "reason", why)
	})
}

func (t *tenure) isLost() bool {
	select {
	case <-t.lost:
		return true
	default:
		return false
	}
}

// end stops the renewals and the step-down timer and cancels ctx.
func (t *tenure) end() {
	close(t.stop)
	<-t.done
	t.mu.Lock()
	t.deadline.Stop()
	t.mu.Unlock()
	t.cancel()
}

// release writes the slot free, keeping generation known, once every
// shard's function has returned; then ends the tenure.
func (t *tenure) release(ctx context.Context, known int64) {
	close(t.stop)
	<-t.done
	t.mu.Lock()
	defer t.mu.Unlock()
	t.deadline.Stop()
	defer t.cancel()
	if t.isLost() {
		return
	}
	actx, cancel := context.WithTimeout(ctx, t.opt.RenewDeadline)
	defer cancel()
	if err := t.writer.Update(actx, freeRecord(known, time.Now())); err != nil {
		t.log.Error(err, "Releasing the slot failed; the others take its shards when its lease expires")
		return
	}
	t.log.Info("Released the slot", "generation", known)
}

// putBack writes a deleted slot back free with generation known, like
// the elector's tombstone: only while this tenure's lease could still be
// live (within LeaseDuration of its last good write), so that the count
// survives in the store; later someone else writes it back.
func (t *tenure) putBack(ctx context.Context, known int64) {
	t.mu.Lock()
	gone, left := t.gone, t.opt.LeaseDuration-time.Since(t.good)
	t.mu.Unlock()
	if !gone || left <= 0 {
		return
	}
	actx, cancel := context.WithTimeout(ctx, left)
	defer cancel()
	if err := t.writer.Create(actx, freeRecord(known, time.Now())); err != nil {
		t.log.V(1).Info("Writing the deleted slot back failed", "err", err)
		return
	}
	t.log.Info("Wrote the deleted slot back", "generation", known)
}
