package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clientgole "k8s.io/client-go/tools/leaderelection"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/backend/git"
	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/backend/s3"
	"github.com/b3df926d/leaderelection/gate"
	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

const wait = 30 * time.Second

func TestMain(m *testing.M) {
	ctrl.SetLogger(klog.Background())
	os.Exit(testserver.RunTests(m))
}

// backends returns, for each of this module's backends, a function making
// a lock for identity on one shared record.
func backends(t *testing.T, cfg *rest.Config) map[string]func(identity string) lock.Interface {
	t.Helper()
	mem := locktest.NewMemoryStore("interop")
	path := filepath.Join(t.TempDir(), "record.json")
	client := testserver.Clientset(t, cfg)
	name := locktest.Name(t)
	s3srv := testserver.StartS3(t)
	s3srv.CreateBucket(t, "interop")
	repo := testserver.NewGitRepo(t)
	gitURL := "git://" + repo.ServeDaemon(t) + "/" + repo.Name
	return map[string]func(string) lock.Interface{
		"s3": func(id string) lock.Interface {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			l, err := s3.New(ctx, s3.Options{Bucket: "interop", Key: name + ".json", Identity: id, Client: s3srv.Client(s3srv.Endpoint)})
			if err != nil {
				t.Fatal(err)
			}
			return l
		},
		"git": func(id string) lock.Interface {
			l, err := git.New(context.Background(), git.Options{URL: gitURL, Name: name, Identity: id})
			if err != nil {
				t.Fatal(err)
			}
			return l
		},
		"memory": func(id string) lock.Interface { return mem.Lock(id) },
		"file": func(id string) lock.Interface {
			l, err := file.New(context.Background(), file.Options{Path: path, Identity: id})
			if err != nil {
				t.Fatal(err)
			}
			return l
		},
		"lease": func(id string) lock.Interface {
			l, err := k8s.New(context.Background(), k8s.Options{Client: client, Namespace: "default", Name: name, Identity: id, DisableEvents: true})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(l.Close)
			return l
		},
	}
}

// runningManager is a started manager whose leader-only runnable closes
// leading.
type runningManager struct {
	cancel  context.CancelFunc
	done    chan error
	leading chan struct{}
}

func startManager(t *testing.T, cfg *rest.Config, l lock.Interface) *runningManager {
	t.Helper()
	m, err := newElectingManager(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	r := &runningManager{done: make(chan error, 1), leading: make(chan struct{})}
	if err := m.Add(manager.RunnableFunc(func(ctx context.Context) error {
		close(r.leading)
		<-ctx.Done()
		return nil
	})); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- m.Start(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the manager and waits for Start to return (once).
func (r *runningManager) stop(t *testing.T) {
	t.Helper()
	stopAndWait(t, "manager", r.cancel, r.done)
}

// stopAndWait calls cancel and waits for what's error on done (taking it
// once: done is closed after), which must be nil or context.Canceled.
func stopAndWait(t *testing.T, what string, cancel context.CancelFunc, done chan error) {
	t.Helper()
	cancel()
	select {
	case err, ok := <-done:
		if ok {
			close(done)
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("%s: %v", what, err)
			}
		}
	case <-time.After(wait):
		t.Fatalf("%s did not stop within %v", what, wait)
	}
}

func (r *runningManager) waitLeading(t *testing.T, who string) {
	t.Helper()
	select {
	case <-r.leading:
	case <-time.After(wait):
		t.Fatalf("%s did not lead within %v", who, wait)
	}
}

// Two controller-runtime managers elect their leader with one of our locks
// (manager.Options.LeaderElectionResourceLockInterface): one leads; when it
// stops (releasing), the other leads.
func TestControllerRuntimeManagerLeadsWithOurLocks(t *testing.T) {
	kube := testserver.SharedKube(t)
	for name, newLock := range backends(t, kube.Config()) {
		t.Run(name, func(t *testing.T) {
			a := startManager(t, kube.Config(), newLock("a"))
			a.waitLeading(t, "the first manager")
			b := startManager(t, kube.Config(), newLock("b"))
			a.stop(t)
			b.waitLeading(t, "the second manager, after the first released")
		})
	}
}

// client-go's own elector (leaderelection.RunOrDie) runs on every one of
// our locks: it leads, and releases on cancel.
func TestClientGoRunOrDieWithOurLocks(t *testing.T) {
	kube := testserver.SharedKube(t)
	for name, newLock := range backends(t, kube.Config()) {
		t.Run(name, func(t *testing.T) {
			l := newLock("client-go")
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			started := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				clientgole.RunOrDie(ctx, clientgole.LeaderElectionConfig{
					Lock:          l,
					LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: 500 * time.Millisecond,
					ReleaseOnCancel: true,
					Callbacks: clientgole.LeaderCallbacks{
						OnStartedLeading: func(context.Context) { close(started) },
						OnStoppedLeading: func() {},
					},
				})
			}()
			select {
			case <-started:
			case <-ctx.Done():
				t.Fatal("client-go's elector did not lead")
			}
			cancel()
			<-done
			rec, _, err := newLock("reader").Get(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if rec.HolderIdentity != "" {
				t.Fatalf("holder %q after client-go released", rec.HolderIdentity)
			}
		})
	}
}

// replica is an app run by leaderelection.Run until the test ends.
type replica struct {
	a      *app
	le     *leaderelection.Leadership
	starts atomic.Int32 // terms whose controller started
	cancel context.CancelFunc
	done   chan error
}

// startReplica runs newApp for id on the Lease lease, reaching the API
// server through cfg, with recovery on (as main does by default).
func startReplica(t *testing.T, cfg *rest.Config, ns, lease, id string) *replica {
	t.Helper()
	l, err := k8s.New(context.Background(), k8s.Options{Client: kubernetes.NewForConfigOrDie(cfg), Namespace: ns, Name: lease, Identity: id, DisableEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	r := &replica{le: &leaderelection.Leadership{}, done: make(chan error, 1)}
	r.a, err = newApp(cfg, l, ns, leaderelection.Option{
		Recover: true, Recampaign: true, ReleaseOnCancel: true, Port: leaderelection.NoHealthServer, Leadership: r.le,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second, RecoverDeadline: 30 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	lead := r.a.opt.RunE
	r.a.opt.RunE = func(ctx context.Context) error { r.starts.Add(1); return lead(ctx) }
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- leaderelection.Run(ctx, r.a.opt) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop ends Run and waits for it (once).
func (r *replica) stop(t *testing.T) {
	t.Helper()
	stopAndWait(t, "Run", r.cancel, r.done)
}

// termOn returns the term the controller wrote on the ConfigMap (0: none).
func termOn(t *testing.T, c kubernetes.Interface, ns, name string) int64 {
	t.Helper()
	cm, err := c.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.ParseInt(cm.Annotations[annotation], 10, 64)
	return n
}

// leaderelection.Run elects a controller-runtime manager (newApp). The
// manager and its cache run in Standby on every replica: the follower's
// cache holds the labelled ConfigMap and its writes are refused by its
// gate; the leader's controller writes its term on it. When the leader
// stops, the follower leads and its controller writes the next term. Its
// only way to the API server then refuses connections for longer than the
// lease: it recovers, leading again in the same term, its controller never
// restarted, and reconciles a ConfigMap labelled meanwhile.
func TestRunElectsAManagerWithStandbyGateAndRecovery(t *testing.T) {
	kube := testserver.SharedKube(t)
	plain := kubernetes.NewForConfigOrDie(kube.Config())
	ns, lease := "default", locktest.Name(t)
	labelled := func(name string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{label: "term"}}}
	}
	first := lease + "-1"
	if _, err := plain.CoreV1().ConfigMaps(ns).Create(context.Background(), labelled(first), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	a := startReplica(t, kube.Config(), ns, lease, "a")
	poll.Until(t, "a to lead", wait, a.le.IsLeader)
	poll.Until(t, "a's controller to write its term", wait, func() bool { return termOn(t, plain, ns, first) == a.le.Term() })
	proxy := testserver.StartProxy(t, kube.Addr)
	b := startReplica(t, kube.ConfigVia(kube.Config(), proxy.Addr()), ns, lease, "b")
	poll.Until(t, "b's standby to warm its cache with the ConfigMap", wait, func() bool {
		var cm corev1.ConfigMap
		return b.a.mgr.GetCache().Get(context.Background(), client.ObjectKey{Namespace: ns, Name: first}, &cm) == nil
	})
	if err := b.a.mgr.GetClient().Create(context.Background(), labelled(lease+"-refused")); !gate.IsRefused(err) {
		t.Fatalf("a write through the follower's gated client: %v, want refused", err)
	}

	a.stop(t)
	poll.Until(t, "b to lead after a released", wait, b.le.IsLeader)
	term := b.le.Term()
	poll.Until(t, "b's controller to write its term", wait, func() bool { return termOn(t, plain, ns, first) == term })

	restore := proxy.Refuse()
	poll.Until(t, "b to stop leading while cut off", wait, func() bool { return !b.le.IsLeader() })
	second := lease + "-2"
	if _, err := plain.CoreV1().ConfigMaps(ns).Create(context.Background(), labelled(second), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second) // the outage, longer than the 3 s lease: the fault, not synchronisation
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "b to lead again", wait, b.le.IsLeader)
	if got := b.le.Term(); got != term || b.starts.Load() != 1 {
		t.Fatalf("b leads in term %d after %d starts of its controller; want term %d, one start", got, b.starts.Load(), term)
	}
	poll.Until(t, "b's controller to write its term on the ConfigMap labelled during the outage", wait, func() bool { return termOn(t, plain, ns, second) == term })
}
