package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	clientgole "k8s.io/client-go/tools/leaderelection"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/manager"

	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/backend/git"
	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/backend/s3"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

const wait = 30 * time.Second

func TestMain(m *testing.M) {
	ctrl.SetLogger(klog.Background())
	code := m.Run()
	testserver.StopSharedKube()
	os.Exit(code)
}

// backends returns, for each of this module's backends, a function making
// a lock for identity on one shared record.
func backends(t *testing.T, cfg *rest.Config) map[string]func(identity string) lock.Interface {
	t.Helper()
	mem := locktest.NewMemoryStore("interop")
	path := filepath.Join(t.TempDir(), "record.json")
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
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
	m, err := newManager(cfg, l)
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
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok {
			close(r.done)
			if err != nil && !errors.Is(err, context.Canceled) {
				t.Errorf("manager: %v", err)
			}
		}
	case <-time.After(wait):
		t.Fatalf("manager did not stop within %v", wait)
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
