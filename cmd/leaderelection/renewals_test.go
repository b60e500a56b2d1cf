package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// fullLock has every optional interface of package lock, with values the
// test can tell apart from defaults.
type fullLock struct {
	lock.Interface
	watching bool
}

func (l *fullLock) Changes(ctx context.Context) <-chan struct{} { return make(chan struct{}) }
func (l *fullLock) Watching() bool                              { return l.watching }
func (l *fullLock) Age([]byte) (time.Duration, bool)            { return 7 * time.Second, true }
func (l *fullLock) ReadinessName() string                       { return "full" }
func (l *fullLock) Ready() error                                { return errors.New("recovering") }
func (l *fullLock) ValidateDurations(lease, _, _ time.Duration) error {
	if lease < time.Hour {
		return errors.New("LeaseDuration too short for this store")
	}
	return nil
}

// The wrapper run puts around the lock keeps the lock's optional
// interfaces, with the lock's answers: without them the elector would trust
// a k8s watch that is down (no WatchState), date gossip records late (no
// Aged), /readyz would lose the gossip voter's check, and a Lease's
// whole-second rule would not be applied (no DurationRules).
func TestTimeRenewalsKeepsTheLocksOptionalInterfaces(t *testing.T) {
	store := locktest.NewMemoryStore("t")
	full := &fullLock{Interface: store.Lock("a"), watching: false}
	w := timeRenewals(full, func(time.Time) {}, func(error) {})
	ws, ok := w.(lock.WatchState)
	if !ok || ws.Watching() {
		t.Errorf("WatchState lost or not passed through (ok=%v)", ok)
	}
	if a, ok := w.(lock.Aged); !ok {
		t.Error("Aged lost")
	} else if age, known := a.Age(nil); age != 7*time.Second || !known {
		t.Errorf("Age = %v, %v; want the lock's 7s, true", age, known)
	}
	if rc, ok := w.(lock.ReadinessChecker); !ok || rc.ReadinessName() != "full" || rc.Ready() == nil {
		t.Errorf("ReadinessChecker lost or not passed through (ok=%v)", ok)
	}
	if r, ok := w.(lock.DurationRules); !ok || r.ValidateDurations(time.Minute, 0, 0) == nil || r.ValidateDurations(time.Hour, 0, 0) != nil {
		t.Errorf("DurationRules lost or not passed through (ok=%v)", ok)
	}

	// A lock with none of them gains none that would change the
	// elector's behaviour: no watch, and ages unknown.
	plain := timeRenewals(struct{ lock.Interface }{store.Lock("b")}, func(time.Time) {}, func(error) {})
	if _, ok := plain.(lock.Watcher); ok {
		t.Error("a lock without a watch gained one")
	}
	if _, ok := plain.(lock.ReadinessChecker); ok {
		t.Error("a lock without a readiness check gained one")
	}
	if a, ok := plain.(lock.Aged); ok {
		if _, known := a.Age(nil); known {
			t.Error("a lock that knows no ages reports one")
		}
	}
	if r, ok := plain.(lock.DurationRules); ok && r.ValidateDurations(time.Second, 0, 0) != nil {
		t.Error("a lock without rules on the durations gained some")
	}
	// A watcher without WatchState stays trusted.
	mem := timeRenewals(store.Lock("c"), func(time.Time) {}, func(error) {})
	if ws, ok := mem.(lock.WatchState); ok && !ws.Watching() {
		t.Error("a watch without WatchState reports itself down")
	}
}
