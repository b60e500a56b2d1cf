package gossip

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// A majority of the voters restarts without state while the third voter
// missed the last write: the register must not come back as that older
// record after the re-initialisation (issue #23). Term 2 (w's) was chosen
// by v1 and v2 only; f saw term 1 and never term 2. After v1 and v2
// restart and the register is re-initialised, f must read the lock as a
// deleted record, so that its elector continues by a claim, which a
// candidate that knew term 2 replaces, rather than take over v3's term-1
// record (or a released record at term 1) at once and lead term 2 a
// second time: "term 2 (c2) after term 2 (c1)", seen in
// TestMajorityRestartWithoutStateDirReinitialisesAndTermsGoOn.
func TestMajorityRestartWithoutStateBesideALaggingVoterReadsAsDeleted(t *testing.T) {
	c := newCluster(t, 3, false, fastReinit)
	w := c.start("w", nil)
	f := c.start("f", nil)
	c.waitMembers(5)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := w.Create(ctx, locktest.NewRecord("w", 1)); err != nil {
		t.Fatalf("Create term 1: %v", err)
	}
	if rec, _, err := f.Get(ctx); err != nil || rec.LeaderTransitions != 1 {
		t.Fatalf("f reads %+v, %v; want term 1", rec, err)
	}
	// Term 2 reaches v1 and v2 only, and f never hears of it.
	for _, to := range []string{"v3", "f"} {
		c.net.Cut("w", to)
		c.net.Cut(to, "w")
	}
	if _, _, err := w.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if err := w.Update(ctx, locktest.NewRecord("w", 2)); err != nil {
		t.Fatalf("Update term 2: %v", err)
	}
	c.stop("w")  // the leader of term 2 is gone (or cut off) from here on
	c.stop("v1") // both stop before either starts again, so that
	c.stop("v2") // neither recovers term 2 from the other
	c.start("v1", nil)
	c.start("v2", nil)
	for _, v := range []string{"v1", "v2"} {
		c.waitReady(v, 30*time.Second)
	}
	var reinits float64
	for _, v := range c.voters {
		reinits += testutil.ToFloat64(c.lock(v).m.reinits)
	}
	if reinits == 0 {
		t.Fatal("no voter re-initialised the register: the test did not reach its point")
	}
	// f's elector would take over the record it reads once its lease is
	// out, with its term + 1: that write must not succeed on a register
	// the re-initialisation left holding term 1 (v3's); f must find the
	// lock deleted instead, and claim.
	rec, _, err := f.Get(ctx)
	if err == nil {
		next := locktest.NewRecord("f", rec.LeaderTransitions+1)
		if err := f.Update(ctx, next); err == nil {
			t.Fatalf("after the re-initialisation f took over %s's record of term %d with term %d, which w held already", rec.HolderIdentity, rec.LeaderTransitions, next.LeaderTransitions)
		} else if !lock.IsConflict(err) {
			t.Fatalf("f's take-over: %v", err)
		}
		rec, _, err = f.Get(ctx)
	}
	switch {
	case lock.IsNotFound(err) && !errors.Is(err, lock.ErrNeverWritten):
		// A deleted record: f's elector claims.
	case err != nil:
		t.Fatalf("f's read after the re-initialisation: %v", err)
	default:
		t.Fatalf("after the re-initialisation f reads %+v (term %d); want a deleted record", *rec, rec.LeaderTransitions)
	}
}
