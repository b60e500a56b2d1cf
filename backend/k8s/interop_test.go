package k8s_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	clientgole "k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock/electiontest"
)

// contender is a candidate the interop driver can start and stop.
type contender struct {
	id       string
	clientGo bool
	start    func() (stop func())
}

// startClientGo runs client-go's own LeaderElector with its stock LeaseLock,
// as any client-go based controller in the fleet would, until stop.
func startClientGo(t *testing.T, s *server, ns, name, id string, tr *electiontest.Tracker) (stop func()) {
	t.Helper()
	client := testserver.Clientset(t, s.kube.Config())
	le, err := clientgole.NewLeaderElector(clientgole.LeaderElectionConfig{
		Lock: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: ns, Name: name},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: id},
		},
		LeaseDuration:   fast.lease,
		RenewDeadline:   fast.renew,
		RetryPeriod:     200 * time.Millisecond,
		ReleaseOnCancel: true,
		Callbacks: clientgole.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				i := tr.Begin(id, leaseTerm(t, s.admin, ns, name, id))
				<-ctx.Done()
				tr.End(i)
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		le.Run(ctx)
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		// client-go does not wait for the leader's function before it
		// releases, so the work is marked stopped before cancelling.
		tr.EndOpen(id)
		cancel()
		<-done
	}
	t.Cleanup(stop)
	return stop
}

// leaseTerm reads the term client-go's elector just acquired (client-go
// does not hand it to the leader's function).
func leaseTerm(t *testing.T, admin kubernetes.Interface, ns, name, id string) int64 {
	lease, err := admin.CoordinationV1().Leases(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != id || lease.Spec.LeaseTransitions == nil {
		t.Errorf("%s: reading the term it acquired: %v", id, err)
		return -1
	}
	return int64(*lease.Spec.LeaseTransitions)
}

// Our elector and client-go's contend for one Lease through 100 forced
// hand-overs: the leader is stopped (releasing), and restarts only once
// another candidate leads. Never two leaders at once, terms strictly
// increase, and both implementations lead.
func TestInteropWithClientGoElector100Transitions(t *testing.T) {
	s := sharedServer(t)
	ns := s.namespace(t)
	el := electiontest.NewElection(t, &harness{s: s, namespace: ns, cfg: s.kube.Config()}, fast.options(), nil)
	tr := el.Tracker
	contenders := []*contender{
		{id: "ours-a", start: func() func() {
			c := el.Start("ours-a")
			return func() { _ = c.Stop(t) }
		}},
	}
	for _, id := range []string{"client-go-b", "client-go-c"} {
		contenders = append(contenders, &contender{id: id, clientGo: true, start: func() func() {
			return startClientGo(t, s, ns, el.Name(), id, tr)
		}})
	}
	byID := map[string]*contender{}
	running := map[string]func(){}
	for _, c := range contenders {
		byID[c.id] = c
		running[c.id] = c.start()
	}

	const transitions = 100
	var stopped *contender
	for n := 1; n <= transitions+1; n++ {
		ts := tr.WaitFor(t, fmt.Sprintf("term %d", n), wait, func(ts []electiontest.Term) bool { return len(ts) >= n })
		n = len(ts)
		if stopped != nil {
			running[stopped.id] = stopped.start()
			stopped = nil
		}
		if n > transitions {
			break
		}
		cur := byID[ts[n-1].ID]
		running[cur.id]()
		stopped = cur
	}
	tr.Check(t)

	led := map[bool]int{}
	for _, tm := range tr.Terms() {
		led[byID[tm.ID].clientGo]++
	}
	t.Logf("terms led: ours %d, client-go %d", led[false], led[true])
	if led[false] == 0 || led[true] == 0 {
		t.Errorf("terms led: ours %d, client-go %d; want both to lead", led[false], led[true])
	}
}
