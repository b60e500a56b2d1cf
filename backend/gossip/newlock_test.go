package gossip

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/benchtest"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// getErr returns the error of a Get by a new candidate id of c.
func getErr(t *testing.T, c *cluster, id string) error {
	t.Helper()
	l := c.start(id, nil)
	c.waitMembers(len(c.voters) + 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err := l.Get(ctx)
	if !lock.IsNotFound(err) {
		t.Fatalf("%s: Get of an empty register = %v, want not-found", id, err)
	}
	return err
}

// Only voters that are all blank prove a lock new: voters with empty
// StateDirs do until a read by a round has made them ordinary voters;
// voters without StateDir never do (they cannot tell a first start from a
// restart that forgot a record).
func TestOnlyBlankVotersProveALockNew(t *testing.T) {
	c := newCluster(t, 3, true, nil)
	if err := getErr(t, c, "a"); !errors.Is(err, lock.ErrNeverWritten) {
		t.Fatalf("Get with every voter blank = %v, want lock.ErrNeverWritten", err)
	}
	if _, err := quorumRead(c.lock("v1"), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := getErr(t, c, "b"); errors.Is(err, lock.ErrNeverWritten) {
		t.Fatalf("Get after a read by a round = %v, want a plain not-found", err)
	}
	c = newCluster(t, 3, false, fastReinit)
	if err := getErr(t, c, "a"); errors.Is(err, lock.ErrNeverWritten) {
		t.Fatalf("Get with voters without StateDir = %v, want a plain not-found", err)
	}
}

// A Create made on a proof that the lock is new writes only the empty
// register: a record written and deleted since (a value without data,
// which the conformance suite's harness writes) is a conflict, even once
// the candidate has learned the deletion, for which a plain Create writes.
// The suite's own test (NeverWrittenHoldsUntilCreate) creates at once,
// and mostly loses to the record's push, before the deletion's arrives.
func TestCreateOnAProofOfANewLockLosesToARecordDeletedSince(t *testing.T) {
	h := &harness{voters: 3, stateDirs: true, clusters: map[string]*cluster{}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a := h.NewLock(t, "new", "a").(*Lock)
	if _, _, err := a.Get(ctx); !errors.Is(err, lock.ErrNeverWritten) {
		t.Fatalf("Get of a new lock = %v, want lock.ErrNeverWritten", err)
	}
	if err := h.NewLock(t, "new", "b").Create(ctx, locktest.NewRecord("b", 1)); err != nil {
		t.Fatal(err)
	}
	h.Delete(t, "new")
	for deleted := false; !deleted; {
		a.mu.Lock()
		deleted = a.haveLatest && !a.latest.IsEmpty() && !hasRecord(a.latest)
		a.mu.Unlock()
		if ctx.Err() != nil {
			t.Fatal("a never learned the deletion")
		}
		time.Sleep(10 * time.Millisecond) // polling for a push
	}
	if err := a.Create(ctx, locktest.NewRecord("a", 1)); !lock.IsConflict(err) {
		t.Fatalf("Create on the proof, after a record was written and deleted: %v, want a conflict", err)
	}
	if err := a.Create(ctx, locktest.NewRecord("a", 2)); err != nil {
		t.Fatalf("a plain Create after the deletion: %v", err)
	}
}

// As on the other stores that prove a lock new: the first candidate at
// Kubernetes' defaults leads within RenewDeadline (without the proof its
// claim would stand 25 s); once the record is deleted a new handle is told
// only that it is missing; and once every voter has lost its StateDir (a
// reset, as deleting a marker is on the other stores), the lock is new
// again: nothing anywhere remembers a write (docs/backends/gossip.md, "A
// new lock").
func TestNewLockLeadsAtOnceADeletedRecordDoesNot(t *testing.T) {
	h := &harness{voters: 3, stateDirs: true, clusters: map[string]*cluster{}}
	const name = "new"
	benchtest.NewLockLeadsAtOnceADeletedOneDoesNot(t, h, h, name, func() {
		c := h.cluster(t, name)
		for _, v := range c.voters {
			c.wipe(v)
		}
		for _, v := range c.voters {
			c.start(v, nil)
		}
		for _, v := range c.voters {
			c.waitReady(v, 30*time.Second)
		}
	})
}
