package s3_test

import (
	"context"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// A write that timed out may land later, even after the next Get; the
// handle recognises its own write and renews from it rather than losing
// the lease to itself.
func TestLateLandingWriteIsRecognisedAsOwn(t *testing.T) {
	s := startVersityGW(t)
	ctx := context.Background()
	h := &harness{s: s}
	a := h.NewLock(t, "late", "a")
	if err := a.Create(ctx, locktest.NewRecord("a", 1)); err != nil {
		t.Fatal(err)
	}
	before := string(h.Stored(t, "late"))

	resume := s.proxy.Stall()
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	err := a.Update(short, locktest.NewRecord("a", 1))
	cancel()
	if err == nil {
		t.Fatal("Update through a stalled proxy succeeded")
	}
	resume() // the proxy now delivers the held request
	deadline := time.Now().Add(10 * time.Second)
	for string(h.Stored(t, "late")) == before {
		if time.Now().After(deadline) {
			t.Fatal("the held write never landed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// a's version is the one before its late write; it must still renew.
	if err := a.Update(ctx, locktest.NewRecord("a", 1)); err != nil {
		t.Fatalf("renew after the timed-out write landed: %v", err)
	}
	// Another candidate's write is not mistaken for a's own.
	b := h.NewLock(t, "late", "b")
	get(t, b)
	if err := b.Update(ctx, locktest.NewRecord("b", 2)); err != nil {
		t.Fatal(err)
	}
	if err := a.Update(ctx, locktest.NewRecord("a", 1)); !lock.IsConflict(err) {
		t.Fatalf("renew after another candidate's take-over returned %v, want a conflict", err)
	}
}
