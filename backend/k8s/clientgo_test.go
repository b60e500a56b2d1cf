package k8s_test

import (
	"context"
	"testing"
	"time"

	"k8s.io/client-go/tools/leaderelection"

	"github.com/b3df926d/leaderelection/lock/locktest"
)

// client-go's own elector runs on this package's lock: it creates the
// Lease, leads, and releases it on cancel.
func TestClientGoElectorRunsThisLock(t *testing.T) {
	s := sharedServer(t)
	ns, name := s.namespace(t), locktest.Name(t)
	l := newLock(t, s.kube.Config(), ns, name, "client-go")

	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	started := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		leaderelection.RunOrDie(ctx, leaderelection.LeaderElectionConfig{
			Lock:            l,
			LeaseDuration:   3 * time.Second,
			RenewDeadline:   2 * time.Second,
			RetryPeriod:     500 * time.Millisecond,
			ReleaseOnCancel: true,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(context.Context) { close(started) },
				OnStoppedLeading: func() {},
			},
		})
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatal("client-go's elector did not lead on this lock")
	}
	cancel()
	<-done
	rec, _, err := newLock(t, s.kube.Config(), ns, name, "reader").Get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if rec.HolderIdentity != "" || rec.LeaderTransitions != 0 {
		t.Fatalf("after client-go's release the record is %+v, want no holder and 0 transitions", rec)
	}
}
