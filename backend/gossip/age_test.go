package gossip

import (
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/b3df926d/leaderelection/lock"
)

// A renewal whose push never reached a follower (its writer was cut off
// from it: a crash mid-round does this) is learned by the follower's
// compare-and-swap at its expiry. Age must then date it back to about when
// the voters accepted it, never before its write began: the elector's
// lease runs from there (lock.Aged), not a whole lease after the late
// read.
func TestRenewalLearnedLateCarriesItsAge(t *testing.T) {
	c, f, ctx := threeVotersAnd(t, "f")

	leader := c.lock("v1")
	acquired := metav1.NewTime(time.Now().Add(-10 * time.Second)) // records keep whole seconds: unlike the renewal's
	rec := lock.Record{HolderIdentity: "v1", LeaseDurationSeconds: 15, AcquireTime: acquired, RenewTime: acquired, LeaderTransitions: 1}
	if err := leader.Create(ctx, rec); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Get(ctx); err != nil { // by push, or from the voters
		t.Fatal(err)
	}

	// v1's renewal is chosen, but nothing v1 sends reaches f any more.
	c.net.Cut("v1", "f")
	began := time.Now()
	rec.RenewTime = metav1.Now()
	if err := leader.Update(ctx, rec); err != nil {
		t.Fatal(err)
	}
	wrote := time.Now()
	// The follower's expiry comes a while later: here, a second.
	gap := time.Second
	<-time.After(gap) // the fault's duration, not synchronisation

	// f still serves the record it saw; its compare-and-swap from it
	// fails and learns the renewal from the voters.
	_, _, err := f.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	next := rec
	next.HolderIdentity, next.LeaderTransitions = "f", 2
	if err := f.Update(ctx, next); !lock.IsConflict(err) {
		t.Fatalf("f's take-over from the record it saw: %v, want a conflict (v1 renewed meanwhile)", err)
	}
	got, raw, err := f.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got.RenewTime.Unix() != rec.RenewTime.Unix() {
		t.Fatalf("after the lost race f reads %v, want v1's renewal %v", got.RenewTime, rec.RenewTime)
	}
	age, ok := f.Age(raw)
	since := time.Since(began)
	if !ok {
		t.Fatal("f does not know the age of the renewal it learned from the voters")
	}
	if age > since {
		t.Fatalf("Age = %v, longer than the %v since the write began: a lease read from it would end before the writer's", age, since)
	}
	// The voters accepted it before Update returned; their replies came
	// over loopback in far less than half the gap.
	if min := time.Since(wrote) - gap/2; age < min {
		t.Fatalf("Age = %v, want at least %v (accepted %v ago)", age, min, time.Since(wrote))
	}
	t.Logf("renewal learned %v after it was written, with Age %v", time.Since(wrote), age)
}
