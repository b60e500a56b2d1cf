// Command controller-runtime runs a controller-runtime manager whose leader
// election uses this module's locks, through
// manager.Options.LeaderElectionResourceLockInterface: the Lease backend
// (with its watch, so followers take over as soon as the leader releases)
// or, off-cluster, the file lock.
//
//	controller-runtime --kubeconfig ~/.kube/config --lock leases --namespace default
//	controller-runtime --kubeconfig ~/.kube/config --lock file --lock-file /var/run/example.lock
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/lock"
)

func main() {
	kind := flag.String("lock", "leases", `lock backend: "leases" or "file"`)
	namespace := flag.String("namespace", "default", "namespace of the Lease")
	name := flag.String("name", "controller-runtime-example", "name of the Lease")
	lockFile := flag.String("lock-file", "", "record file of the file lock")
	klog.InitFlags(nil)
	flag.Parse() // controller-runtime registers --kubeconfig
	ctrl.SetLogger(klog.Background())

	// The identity is lock.DefaultIdentity(): $POD_NAME, else <hostname>_<pid>.
	cfg, err := ctrl.GetConfig()
	if err != nil {
		klog.Fatalf("kubeconfig: %v", err)
	}
	var l lock.Interface
	switch *kind {
	case "leases":
		client, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			klog.Fatal(err)
		}
		kl, err := k8s.New(context.Background(), k8s.Options{Client: client, Namespace: *namespace, Name: *name})
		if err != nil {
			klog.Fatal(err)
		}
		defer kl.Close()
		l = kl
	case "file":
		if l, err = file.New(context.Background(), file.Options{Path: *lockFile}); err != nil {
			klog.Fatal(err)
		}
	default:
		klog.Fatalf("--lock %q: want leases or file", *kind)
	}
	if err := run(ctrl.SetupSignalHandler(), cfg, l); err != nil {
		klog.Fatal(err)
	}
}

// newManager returns a manager that elects its leader with l.
func newManager(cfg *rest.Config, l lock.Interface) (manager.Manager, error) {
	return ctrl.NewManager(cfg, ctrl.Options{
		LeaderElection:                      true,
		LeaderElectionID:                    l.Describe(),
		LeaderElectionResourceLockInterface: l,
		LeaderElectionReleaseOnCancel:       true,
		Metrics:                             metricsserver.Options{BindAddress: "0"},
	})
}

func run(ctx context.Context, cfg *rest.Config, l lock.Interface) error {
	mgr, err := newManager(cfg, l)
	if err != nil {
		return fmt.Errorf("manager: %w", err)
	}
	// Runnables that need leader election start only on the leader.
	err = mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		klog.InfoS("Leading: controllers run here", "identity", l.Identity(), "lock", l.Describe())
		<-ctx.Done()
		return nil
	}))
	if err != nil {
		return err
	}
	if err := mgr.Start(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}
