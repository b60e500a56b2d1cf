package k8s_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"

	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

const wait = 15 * time.Second

func waitSignal(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatalf("no change signal within %v: %s", wait, what)
	}
}

// While its watch is established, a follower's Get costs no API request:
// it is answered from the watch's latest object, and that object's
// resourceVersion is a valid compare-and-swap token.
func TestFollowerGetIsServedFromWatch(t *testing.T) {
	s := sharedServer(t)
	ns, name := s.namespace(t), locktest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()

	leader := newLock(t, s.kube.Config(), ns, name, "leader")
	var counter testserver.KubeRequestCounter
	follower := newLock(t, counter.CountRequests(s.kube.Config()), ns, name, "follower")

	rec := locktest.NewRecord("leader", 1)
	if err := leader.Create(ctx, rec); err != nil {
		t.Fatalf("Create: %v", err)
	}
	changes := follower.Changes(ctx)
	renew := func(i int) metav1.Time {
		t.Helper()
		rec.RenewTime = metav1.NewTime(rec.RenewTime.Add(time.Second))
		if err := leader.Update(ctx, rec); err != nil {
			t.Fatalf("renew %d: %v", i, err)
		}
		return rec.RenewTime
	}
	// The first renewal is seen once the watch is established (it may be
	// in the watch's initial list, or an event after it).
	want := renew(0)
	for {
		waitSignal(t, changes, "the first renewal")
		got, _, err := follower.Get(ctx)
		if err != nil {
			t.Fatalf("follower Get: %v", err)
		}
		if got.RenewTime.Equal(&want) {
			break
		}
	}
	counter.Reset()
	for i := 1; i <= 10; i++ {
		want := renew(i)
		// A signal is the cue to look, not proof of this renewal: one
		// left over from the watch's start (its list and the replayed
		// event each signal) may still be buffered. Look at each signal
		// until the follower reads this renewal; every look is a cached
		// Get, which the request count below checks.
		for {
			waitSignal(t, changes, fmt.Sprintf("renewal %d", i))
			got, _, err := follower.Get(ctx)
			if err != nil {
				t.Fatalf("follower Get after renewal %d: %v", i, err)
			}
			if got.RenewTime.Equal(&want) {
				break
			}
		}
	}
	if n := counter.Total(); n != 0 {
		t.Errorf("the follower made %d API requests (%v) over 10 renewals; want 0 while its watch is established", n, counter.Counts())
	}

	// The cached resourceVersion is a real CAS token: taking over from it
	// works, and the deposed leader's renewal then loses.
	got, _, err := follower.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	takeover := locktest.NewRecord("follower", got.LeaderTransitions+1)
	if err := follower.Update(ctx, takeover); err != nil {
		t.Fatalf("take-over from the watched version: %v", err)
	}
	if err := leader.Update(ctx, rec); err == nil {
		t.Fatal("the deposed leader's renewal succeeded after a take-over")
	}
}

// A follower whose cached version is stale (its watch lags, or a write of
// its own failed) loses the race once, then reads from the API server and
// wins with the current version.
func TestStaleWatchLosesOnceThenReadsServer(t *testing.T) {
	s := sharedServer(t)
	ns, name := s.namespace(t), locktest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	proxy := testserver.StartProxy(t, s.kube.Addr)

	leader := newLock(t, s.kube.Config(), ns, name, "leader")
	follower := newLock(t, s.kube.ConfigVia(s.kube.Config(), proxy.Addr()), ns, name, "follower")
	if err := leader.Create(ctx, locktest.NewRecord("leader", 1)); err != nil {
		t.Fatal(err)
	}
	changes := follower.Changes(ctx)
	waitSignal(t, changes, "the watch's first list")
	if _, _, err := follower.Get(ctx); err != nil {
		t.Fatal(err)
	}
	// The follower's connection stalls; the leader renews meanwhile, so
	// the follower's watched copy is stale.
	resume := proxy.Stall()
	later := locktest.NewRecord("leader", 1)
	later.RenewTime = metav1.NewTime(later.RenewTime.Add(time.Minute))
	if err := leader.Update(ctx, later); err != nil {
		t.Fatal(err)
	}
	stale, _, err := follower.Get(ctx)
	if err != nil {
		t.Fatalf("Get from the watch while stalled: %v", err)
	}
	if stale.RenewTime.Equal(&later.RenewTime) {
		t.Fatal("the follower read the renewal through a stalled connection")
	}
	resume()
	err = follower.Update(ctx, locktest.NewRecord("follower", stale.LeaderTransitions+1))
	if !lock.IsConflict(err) {
		t.Fatalf("take-over from a stale watched version returned %v, want a conflict", err)
	}
	fresh, _, err := follower.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !fresh.RenewTime.Equal(&later.RenewTime) {
		t.Fatalf("after a lost race Get reads renew time %v, want the server's %v", fresh.RenewTime, later.RenewTime)
	}
	if err := follower.Update(ctx, locktest.NewRecord("follower", fresh.LeaderTransitions+1)); err != nil {
		t.Fatalf("take-over after a fresh read: %v", err)
	}
}

// Leadership changes become Kubernetes Events on the Lease.
func TestRecordEventCreatesEvent(t *testing.T) {
	s := sharedServer(t)
	ns, name := s.namespace(t), locktest.Name(t)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	l, err := k8s.New(context.Background(), k8s.Options{Client: s.admin, Namespace: ns, Name: name, Identity: "pod-a"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	selector := fields.OneTermEqualSelector("involvedObject.name", name).String()
	w, err := s.admin.CoreV1().Events(ns).Watch(ctx, metav1.ListOptions{FieldSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if err := l.Create(ctx, locktest.NewRecord("pod-a", 1)); err != nil {
		t.Fatal(err)
	}
	l.RecordEvent("became leader")
	for ev := range w.ResultChan() {
		e, ok := ev.Object.(*corev1.Event)
		if !ok {
			continue
		}
		if e.Reason != "LeaderElection" || e.Message != "pod-a became leader" || e.InvolvedObject.Kind != "Lease" {
			t.Fatalf("event %s: reason %q, message %q, object %s; want LeaderElection, %q on the Lease", e.Name, e.Reason, e.Message, e.InvolvedObject.Kind, "pod-a became leader")
		}
		return
	}
	t.Fatalf("no event within %v", wait)
}
