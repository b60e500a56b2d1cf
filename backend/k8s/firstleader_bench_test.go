package k8s_test

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/b3df926d/leaderelection/internal/benchtest"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
)

// BenchmarkFirstLeaderOnNewLock measures the time from Run to the first
// OnStartedLeading on a brand-new Lease (kube-apiserver on loopback), for
// this module's elector on backend/k8s and for client-go's on its stock
// LeaseLock, at 15s/10s/2s and 2s/1.5s/1s (ms/first-leader). A deleted
// Lease leaves no trace, so ours takes a claim that stands RenewDeadline +
// max(LeaseDuration, 2.2 × RetryPeriod) (docs/elector.md):
//
//	go test -run '^$' -bench FirstLeaderOnNewLock -benchtime 1x ./backend/k8s
func BenchmarkFirstLeaderOnNewLock(b *testing.B) {
	kube := testserver.SharedKube(b)
	s := &server{kube: kube, admin: testserver.Clientset(b, kube.Config())}
	ns := s.namespace(b)
	ours := func(tb testing.TB, name, id string) lock.Interface { return newLock(tb, kube.Config(), ns, name, id) }
	stock := func(tb testing.TB, name, id string) lock.Interface {
		return &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: ns, Name: name},
			Client:     testserver.Clientset(tb, kube.Config()).CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: id},
		}
	}
	benchtest.FirstLeader(b, ours, stock)
}
