// Command controller-runtime runs a controller-runtime manager made highly
// available by this module's Run, on the Lease backend or, off-cluster,
// the file lock:
//
//	controller-runtime --kubeconfig ~/.kube/config --lock leases --namespace default
//	controller-runtime --kubeconfig ~/.kube/config --lock file --lock-file /var/run/example.lock
//
// Run elects, not the manager (docs/elector.md, "controller-runtime"), so
// that the manager gets what its own election does not give it:
//
//   - A warm standby: the manager (its cache, informers, webhooks, metrics)
//     starts in Option.Standby on every replica, and a replica campaigns
//     once its cache has synced; a new leader's controller starts on a
//     warm cache.
//   - A write gate: the manager is built on gate.Config around the
//     rest.Config, so its clients' writes pass only while this replica
//     leads; reads, and so the informers, always pass.
//   - Recovery (--leader-elect-recover, on here by default): a leader cut
//     off from the API server keeps its controller running behind the
//     closed gate and leads again in the same term if nobody took over.
//
// The controller runs on the leader only: Option.Run builds it unmanaged
// and starts it with the leader's context, whose term it writes on every
// ConfigMap labelled leaderelection-example=term in --namespace.
//
// --election=manager shows the other way: the manager's own election
// (client-go's elector) on one of this module's locks, through
// manager.Options.LeaderElectionResourceLockInterface, without standby,
// gate or recovery.
package main

import (
	"context"
	"errors"
	goflag "flag"
	"fmt"
	"strconv"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/source"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/gate"
	"github.com/b3df926d/leaderelection/lock"
)

// The label that selects the ConfigMaps the controller writes its term
// on, and the annotation it writes.
const (
	label      = "leaderelection-example"
	annotation = "leaderelection-example/term"
)

func main() {
	kind := pflag.String("lock", "leases", `lock backend: "leases" or "file"`)
	namespace := pflag.String("namespace", "default", "namespace of the Lease and of the ConfigMaps the controller writes")
	name := pflag.String("name", "controller-runtime-example", "name of the Lease")
	lockFile := pflag.String("lock-file", "", "record file of the file lock")
	election := pflag.String("election", "run", `"run": leaderelection.Run elects (standby, gate, recovery); "manager": the manager's own election on our lock`)
	opt := leaderelection.Option{Recover: true, Recampaign: true, ReleaseOnCancel: true}
	opt.AddFlags(pflag.CommandLine)
	klog.InitFlags(nil)
	pflag.CommandLine.AddGoFlagSet(goflag.CommandLine) // controller-runtime's --kubeconfig, klog's flags
	pflag.Parse()
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
	ctx := ctrl.SetupSignalHandler()
	switch *election {
	case "run":
		a, err := newApp(cfg, l, *namespace, opt)
		if err != nil {
			klog.Fatal(err)
		}
		err = leaderelection.Run(ctx, a.opt)
		if err != nil {
			klog.Fatal(err)
		}
	case "manager":
		if err := runElectingManager(ctx, cfg, l); err != nil {
			klog.Fatal(err)
		}
	default:
		klog.Fatalf("--election %q: want run or manager", *election)
	}
}

// app is one replica: a manager that runs on every replica (Standby) and
// a controller that runs on the leader (Run).
type app struct {
	mgr manager.Manager
	ns  string
	opt leaderelection.Option // opt as given, with Lock, Gate, Standby and RunE set
}

// newApp builds the manager on a gated config, with its ConfigMap informer
// registered so that Standby warms it, and the options that run it.
func newApp(cfg *rest.Config, l lock.Interface, ns string, opt leaderelection.Option) (*app, error) {
	g := gate.New()
	gated, err := g.Config(cfg)
	if err != nil {
		return nil, err
	}
	mgr, err := ctrl.NewManager(gated, ctrl.Options{
		// Run elects. With the manager's election off, every runnable
		// added to the manager starts on every replica, controllers
		// too: the leader's controller is built in lead, not added.
		LeaderElection: false,
		Cache: cache.Options{
			DefaultNamespaces: map[string]cache.Config{ns: {}},
			// A read of a kind no informer was registered for fails,
			// rather than starting a cold informer on the leader.
			ReaderFailOnMissingInformer: true,
		},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0", // Run's health server has /readyz, with the standby check
	})
	if err != nil {
		return nil, fmt.Errorf("manager: %w", err)
	}
	// Registered before the manager starts: it starts, and the standby
	// waits for, every informer registered by then.
	if _, err := mgr.GetCache().GetInformer(context.Background(), &corev1.ConfigMap{}); err != nil {
		return nil, err
	}
	a := &app{mgr: mgr, ns: ns}
	opt.Lock, opt.Gate = l, g
	opt.Standby, opt.RunE = a.standby, a.lead
	a.opt = opt
	return a, nil
}

// standby runs the manager, on every replica, until the election ends,
// and reports ready once its cache has synced.
func (a *app) standby(ctx context.Context, ready func()) {
	done := make(chan error, 1)
	go func() { done <- a.mgr.Start(ctx) }()
	if a.mgr.GetCache().WaitForCacheSync(ctx) {
		ready()
	}
	if err := <-done; err != nil {
		klog.ErrorS(err, "The manager stopped")
	}
}

// lead runs the controller while this replica leads (and, with
// --leader-elect-recover, while it recovers: its writes are refused by
// the gate, and retried). A term gets a controller of its own, since a
// controller starts once.
func (a *app) lead(ctx context.Context) error {
	term, _ := leaderelection.TermFrom(ctx)
	klog.InfoS("Leading: the controller runs here", "term", term)
	c, err := controller.NewUnmanaged("configmap-term", controller.Options{
		Reconciler: reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
			return a.reconcile(ctx, req, term)
		}),
		SkipNameValidation: ptr.To(true), // the same name every term
	})
	if err != nil {
		return err
	}
	if err := c.Watch(source.Kind(a.mgr.GetCache(), &corev1.ConfigMap{}, &handler.TypedEnqueueRequestForObject[*corev1.ConfigMap]{})); err != nil {
		return err
	}
	return c.Start(ctx)
}

// reconcile writes term on a labelled ConfigMap, reading from the cache
// and writing through the gated client.
func (a *app) reconcile(ctx context.Context, req reconcile.Request, term int64) (reconcile.Result, error) {
	var cm corev1.ConfigMap
	if err := a.mgr.GetClient().Get(ctx, req.NamespacedName, &cm); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	want := strconv.FormatInt(term, 10)
	if cm.Labels[label] != "term" || cm.Annotations[annotation] == want {
		return reconcile.Result{}, nil
	}
	if cm.Annotations == nil {
		cm.Annotations = map[string]string{}
	}
	cm.Annotations[annotation] = want
	return reconcile.Result{}, a.mgr.GetClient().Update(ctx, &cm) // refused (and retried) while the gate is closed
}

// runElectingManager runs a manager whose own election uses l, with a
// leader-only runnable.
func runElectingManager(ctx context.Context, cfg *rest.Config, l lock.Interface) error {
	mgr, err := newElectingManager(cfg, l)
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

// newElectingManager returns a manager that elects its leader with l.
func newElectingManager(cfg *rest.Config, l lock.Interface) (manager.Manager, error) {
	return ctrl.NewManager(cfg, ctrl.Options{
		LeaderElection:                      true,
		LeaderElectionID:                    l.Describe(),
		LeaderElectionResourceLockInterface: l,
		LeaderElectionReleaseOnCancel:       true,
		Metrics:                             metricsserver.Options{BindAddress: "0"},
	})
}
