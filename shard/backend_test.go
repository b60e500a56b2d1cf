//go:build unix

package shard_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/backend/k8s"
	s3lock "github.com/b3df926d/leaderelection/backend/s3"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
)

func TestMain(m *testing.M) { os.Exit(testserver.RunTests(m)) }

// store is where a scenario's records live: files in t.TempDir(), or
// Leases in a namespace of the package's shared kube-apiserver.
type store struct {
	name string
	// replica returns the lock factory of a replica whose handles carry
	// identity.
	replica func(identity string) func(name string, fresh bool) (lock.Interface, error)
	// remove deletes a record as an operator would; read reads one as an
	// observer.
	remove func(name string) error
	read   func(name string) (*lock.Record, bool)
	// open makes another store of this kind, for t.
	open func(t *testing.T) store
}

// locks returns the lock factory of a replica whose handles carry
// identity, each passed through wrap.
func (st store) locks(identity string, wrap func(lock.Interface) lock.Interface) func(string, bool) (lock.Interface, error) {
	open := st.replica(identity)
	return func(name string, fresh bool) (lock.Interface, error) {
		l, err := open(name, fresh)
		if err != nil {
			return nil, err
		}
		return wrap(l), nil
	}
}

// observe reads the record through l, an observer's handle opened with
// err: false if either failed.
func observe(l lock.Interface, err error) (*lock.Record, bool) {
	if err != nil {
		return nil, false
	}
	rec, _, err := l.Get(context.Background())
	return rec, err == nil
}

// again is another, empty store of the same kind, for each of a test's
// subtests.
func (st store) again(t *testing.T) store { return st.open(t) }

// eachStore runs test on the file backend, on the real kube-apiserver and
// on a real S3 server (versitygw).
func eachStore(t *testing.T, test func(t *testing.T, st store)) {
	t.Run("file", func(t *testing.T) { test(t, fileStore(t)) })
	t.Run("k8s", func(t *testing.T) { test(t, kubeStore(t)) })
	t.Run("s3", func(t *testing.T) { test(t, s3Store(t)) })
}

func fileStore(t *testing.T) store {
	dir := t.TempDir()
	open := func(name, identity string) (*file.Lock, error) {
		return file.New(context.Background(), file.Options{Path: filepath.Join(dir, name), Identity: identity})
	}
	return store{
		name: "file", open: fileStore,
		replica: func(identity string) func(string, bool) (lock.Interface, error) {
			return func(name string, _ bool) (lock.Interface, error) { return open(name, identity) }
		},
		remove: func(name string) error { return os.Remove(filepath.Join(dir, name)) },
		read:   func(name string) (*lock.Record, bool) { return observe(open(name, "observer")) },
	}
}

// kubeStore is a namespace of its own on the shared kube-apiserver. Each
// replica has its own clientset; every handle is a backend/k8s Lock
// (Run subscribes the watching ones to Changes, so their Get answers from
// the watch; the fresh ones and the writer are never subscribed, so
// theirs asks the API server), closed when t ends.
func kubeStore(t *testing.T) store {
	kube := testserver.SharedKube(t)
	admin := testserver.Clientset(t, kube.Config())
	var b [6]byte
	rand.Read(b[:])
	ns := testserver.CreateNamespace(t, admin, "shard-"+hex.EncodeToString(b[:]))
	var mu sync.Mutex
	var opened []*k8s.Lock
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, l := range opened {
			l.Close()
		}
	})
	open := func(client kubernetes.Interface, name, identity string) (*k8s.Lock, error) {
		l, err := k8s.New(context.Background(), k8s.Options{Client: client, Namespace: ns, Name: name, Identity: identity, DisableEvents: true})
		if err != nil {
			return nil, err
		}
		mu.Lock()
		opened = append(opened, l)
		mu.Unlock()
		return l, nil
	}
	leases := admin.CoordinationV1().Leases(ns)
	return store{
		name: "k8s", open: kubeStore,
		replica: func(identity string) func(string, bool) (lock.Interface, error) {
			client := testserver.Clientset(t, kube.Config())
			return func(name string, _ bool) (lock.Interface, error) { return open(client, name, identity) }
		},
		remove: func(name string) error { return leases.Delete(context.Background(), name, metav1.DeleteOptions{}) },
		read:   func(name string) (*lock.Record, bool) { return observe(open(admin, name, "observer")) },
	}
}

// s3Store is a bucket of its own on a versitygw server started for t
// (another store of this kind is another bucket on the same server). S3
// cannot watch: Run polls every record. The fresh handles read S3 on
// every Get (s3lock.NoCache); the others may serve a cached record, as
// the S3 lock's followers do.
func s3Store(t *testing.T) store {
	srv := testserver.StartS3(t)
	var open func(t *testing.T) store
	open = func(t *testing.T) store {
		var b [6]byte
		rand.Read(b[:])
		bucket := "shard-" + hex.EncodeToString(b[:])
		srv.CreateBucket(t, bucket)
		client := srv.Client(srv.Endpoint)
		newLock := func(name, identity string, fresh bool) (*s3lock.Lock, error) {
			o := s3lock.Options{Client: client, Bucket: bucket, Key: name, Identity: identity,
				SkipConditionalWriteCheck: true} // versitygw's conditional writes: backend/s3's tests check them
			if fresh {
				o.ReleaseCheckInterval = s3lock.NoCache
			}
			return s3lock.New(context.Background(), o)
		}
		return store{
			name: "s3", open: open,
			replica: func(identity string) func(string, bool) (lock.Interface, error) {
				return func(name string, fresh bool) (lock.Interface, error) { return newLock(name, identity, fresh) }
			},
			remove: func(name string) error {
				_, err := client.DeleteObject(context.Background(), &awss3.DeleteObjectInput{Bucket: &bucket, Key: &name})
				return err
			},
			read: func(name string) (*lock.Record, bool) { return observe(newLock(name, "observer", true)) },
		}
	}
	return open(t)
}

// faulty is a replica's lock handle with its faults. File and k8s handles
// watch (lock.Watcher), and a k8s handle tells whether its watch is up
// (lock.WatchState), which Run uses to poll meanwhile; S3 handles cannot
// watch, and their watch ends at once (Run then polls).
type faulty struct {
	lock.Interface
	r *replica
}

// Changes forwards the handle's signals; for a slot record, none while
// the replica's slot watches lag (its view of the slots then changes only
// when it reads them for its own reasons: the refresh after an
// acknowledgement, the safety read every LeaseDuration).
func (l *faulty) Changes(ctx context.Context) <-chan struct{} {
	w, ok := l.Interface.(lock.Watcher)
	if !ok {
		// A store that cannot watch (S3): a watch ended at once, which
		// Run polls instead of.
		ended := make(chan struct{})
		close(ended)
		return ended
	}
	in := w.Changes(ctx)
	if !strings.Contains(l.Describe(), "-slot-") {
		return in
	}
	out := make(chan struct{}, 1)
	go func() {
		defer close(out)
		for range in {
			if l.r.lagSlots.Load() {
				continue
			}
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out
}

func (l *faulty) Watching() bool {
	if ws, ok := l.Interface.(lock.WatchState); ok {
		return ws.Watching()
	}
	return true
}

func (l *faulty) fault(ctx context.Context) error {
	if l.r.cut.Load() {
		return errors.New("cut off")
	}
	if l.r.frozen.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func (l *faulty) Get(ctx context.Context) (*lock.Record, []byte, error) {
	if err := l.fault(ctx); err != nil {
		return nil, nil, err
	}
	return l.Interface.Get(ctx)
}

func (l *faulty) Create(ctx context.Context, rec lock.Record) error {
	if err := l.fault(ctx); err != nil {
		return err
	}
	return l.Interface.Create(ctx, rec)
}

func (l *faulty) Update(ctx context.Context, rec lock.Record) error {
	if err := l.fault(ctx); err != nil {
		return err
	}
	return l.Interface.Update(ctx, rec)
}
