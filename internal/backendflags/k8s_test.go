package backendflags

import (
	"context"
	"testing"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

// --backend=k8s with Kubernetes' own flags and --kubeconfig leads through a
// Lease on a real API server.
func TestKubeBackendLeadsFromFlags(t *testing.T) {
	kube := testserver.StartKube(t)
	fs := pflag.NewFlagSet("example", pflag.ContinueOnError)
	b := New("example")
	b.AddFlags(fs)
	opt := leaderelection.Option{LeaseLockName: "example", LeaseLockNamespace: "default", ID: "pod-0", Port: leaderelection.NoHealthServer}
	opt.AddFlags(fs)
	err := fs.Parse([]string{
		"--backend=k8s",
		"--kubeconfig=" + kube.Kubeconfig(t),
		"--leader-elect-resource-lock=leases",
		"--leader-elect-resource-name=example-flags",
		"--leader-elect-resource-namespace=kube-system",
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := b.Lock(context.Background(), opt.ID, &opt)
	if err != nil || l != nil || opt.KubeClient == nil {
		t.Fatalf("Lock = %v, %v with KubeClient %v; want Option's own Lease through a client", l, err, opt.KubeClient)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	led := make(chan int64, 1)
	opt.Run = func(ctx context.Context) {
		term, _ := leaderelection.TermFrom(ctx)
		led <- term
		<-ctx.Done()
	}
	errc := make(chan error, 1)
	go func() { errc <- leaderelection.Run(ctx, opt) }()
	select {
	case <-led:
	case err := <-errc:
		t.Fatalf("Run returned %v before leading", err)
	}
	lease, err := opt.KubeClient.CoordinationV1().Leases("kube-system").Get(ctx, "example-flags", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if h := lease.Spec.HolderIdentity; h == nil || *h != "pod-0" {
		t.Fatalf("Lease holder = %v, want pod-0", h)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run after cancel: %v", err)
	}
}
