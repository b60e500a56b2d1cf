package main

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/b3df926d/leaderelection/internal/testserver"
)

// store is a backend's real server, as the campaign sees it: the example's
// flags to reach it, and the faults it can suffer.
type store interface {
	// args and env point the example at the store.
	args() []string
	env() []string
	// proxy is the latency proxy between the replicas and the server (nil
	// for the file backend).
	proxy() *testserver.Proxy
	// restart restarts the server process.
	restart() error
	// deleteRecord deletes the lock record, or its companion of that
	// suffix (a shard set's records: shard.AssignmentSuffix, SlotSuffix).
	deleteRecord(suffix string) error
	// outage makes the store unreachable for every replica (running: the
	// replicas now) until restore is called.
	outage(running []*replica) (restore func() error, err error)
	// requests is the number of requests the store has served so far, or
	// -1 if not measured.
	requests() int64
}

const lockName = "faults"

// newStore starts backend's store; suffixes are the records the replicas
// use, as suffixes of the lock's name ("" the lock itself).
func newStore(tb testing.TB, backend string, replicas int, dir string, suffixes []string) (store, error) {
	switch backend {
	case "gossip":
		return newGossipStore(tb, replicas, dir)
	case "file":
		return &fileStore{path: filepath.Join(dir, "leader.json"), suffixes: suffixes}, nil
	case "k8s":
		return newKubeStore(tb)
	case "s3":
		return newS3Store(tb)
	case "git":
		return newGitStore(tb)
	}
	return nil, fmt.Errorf("--backend=%q is not a backend", backend)
}

// fileStore: the records on local disk; no server, no network.
type fileStore struct {
	path     string
	suffixes []string // the records in use: path+suffix
}

func (s *fileStore) args() []string           { return []string{"--backend=file", "--lock-file=" + s.path} }
func (s *fileStore) env() []string            { return nil }
func (s *fileStore) proxy() *testserver.Proxy { return nil }
func (s *fileStore) restart() error           { return errors.New("the file backend has no server") }
func (s *fileStore) requests() int64          { return -1 }

// outage holds every record's flock, as another process stuck in a
// write would: every replica's lock operation waits on it, a hung store.
func (s *fileStore) outage([]*replica) (func() error, error) {
	var held []*os.File
	restore := func() error {
		for _, f := range held {
			f.Close() // closing the file releases the flock
		}
		return nil
	}
	for _, suffix := range s.suffixes {
		path := s.path + suffix + ".lock"
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
		if err != nil {
			restore()
			return nil, err
		}
		held = append(held, f)
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			restore()
			return nil, fmt.Errorf("holding %s: %w", path, err)
		}
	}
	return restore, nil
}

// refuse is the outage of a store behind the proxy: connections refused.
func refuse(p *testserver.Proxy) (func() error, error) { return p.Refuse(), nil }

func (s *fileStore) deleteRecord(suffix string) error {
	if err := os.Remove(s.path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// kubeStore: etcd and kube-apiserver; replicas reach the apiserver through
// the proxy. Requests are the apiserver's own count of Lease requests.
type kubeStore struct {
	tb         testing.TB
	kube       *testserver.Kube
	p          *testserver.Proxy
	kubeconfig string
	client     *kubernetes.Clientset
	counted    int64 // Lease requests before the last restart
	last       int64
	restarts   int
}

func newKubeStore(tb testing.TB) (*kubeStore, error) {
	k := testserver.StartKube(tb)
	s := &kubeStore{tb: tb, kube: k, p: testserver.StartProxy(tb, k.Addr)}
	s.kubeconfig = k.KubeconfigVia(tb, s.p.Addr())
	var err error
	if s.client, err = kubernetes.NewForConfig(k.Config()); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *kubeStore) args() []string {
	return []string{"--backend=k8s", "--kubeconfig=" + s.kubeconfig,
		"--leader-elect-resource-name=" + lockName, "--leader-elect-resource-namespace=default"}
}
func (s *kubeStore) env() []string                           { return nil }
func (s *kubeStore) proxy() *testserver.Proxy                { return s.p }
func (s *kubeStore) outage([]*replica) (func() error, error) { return refuse(s.p) }

// restart restarts kube-apiserver and etcd in turn.
func (s *kubeStore) restart() error {
	s.restarts++
	if s.restarts%2 == 0 {
		s.kube.RestartEtcd(s.tb)
		return nil
	}
	s.requests() // the count restarts with the apiserver
	s.counted += s.last
	s.last = 0
	s.kube.RestartAPIServer(s.tb)
	return nil
}
func (s *kubeStore) deleteRecord(suffix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.client.CoordinationV1().Leases("default").Delete(ctx, lockName+suffix, metav1.DeleteOptions{})
}
func (s *kubeStore) requests() int64 {
	n, err := s.kube.LeaseRequests()
	if err == nil {
		s.last = n
	}
	return s.counted + s.last
}

// s3Store: versitygw; replicas reach it through the proxy, then a counting
// reverse proxy.
type s3Store struct {
	tb      testing.TB
	s3      *testserver.S3
	p       *testserver.Proxy
	counter *testserver.RequestCounter
}

const s3Bucket = "locks"

func newS3Store(tb testing.TB) (*s3Store, error) {
	srv := testserver.StartS3(tb)
	srv.CreateBucket(tb, s3Bucket)
	u, err := url.Parse(srv.Endpoint)
	if err != nil {
		return nil, err
	}
	s := &s3Store{tb: tb, s3: srv, counter: &testserver.RequestCounter{}}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(u)
			pr.Out.Host = pr.In.Host // SigV4 signs the Host header: keep the one the client signed
		},
		Transport: s.counter,
	}
	front := httptest.NewServer(rp)
	tb.Cleanup(front.Close)
	s.p = testserver.StartProxy(tb, front.Listener.Addr().String())
	return s, nil
}

func (s *s3Store) args() []string {
	return []string{"--backend=s3", "--s3-endpoint=http://" + s.p.Addr(), "--s3-bucket=" + s3Bucket,
		"--s3-key=leaderelection/" + lockName + ".json", "--s3-path-style", "--s3-region=" + s.s3.Region}
}
func (s *s3Store) env() []string {
	return []string{"AWS_ACCESS_KEY_ID=" + s.s3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.s3.SecretKey,
		"AWS_EC2_METADATA_DISABLED=true", "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
}
func (s *s3Store) proxy() *testserver.Proxy                { return s.p }
func (s *s3Store) outage([]*replica) (func() error, error) { return refuse(s.p) }
func (s *s3Store) restart() error {
	s.s3.Restart(s.tb)
	return nil
}
func (s *s3Store) deleteRecord(suffix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	bucket, key := s3Bucket, "leaderelection/"+lockName+".json"+suffix
	_, err := s.s3.Client(s.s3.Endpoint).DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: &bucket, Key: &key})
	return err
}
func (s *s3Store) requests() int64 { return int64(s.counter.Total()) }

// gitStore: a bare repository served by git daemon; replicas reach it
// through the proxy, and each git operation is one connection.
type gitStore struct {
	tb   testing.TB
	repo *testserver.GitRepo
	p    *testserver.Proxy
}

const gitBranch = "locks/" + lockName

func newGitStore(tb testing.TB) (*gitStore, error) {
	repo := testserver.NewGitRepo(tb)
	addr := repo.ServeDaemon(tb)
	return &gitStore{tb: tb, repo: repo, p: testserver.StartProxy(tb, addr)}, nil
}

func (s *gitStore) args() []string {
	return []string{"--backend=git", "--git-url=git://" + s.p.Addr() + "/" + s.repo.Name, "--git-branch=" + gitBranch}
}
func (s *gitStore) env() []string                           { return nil }
func (s *gitStore) proxy() *testserver.Proxy                { return s.p }
func (s *gitStore) outage([]*replica) (func() error, error) { return refuse(s.p) }
func (s *gitStore) restart() error {
	s.repo.RestartDaemon(s.tb)
	return nil
}
func (s *gitStore) deleteRecord(suffix string) error {
	_, err := s.repo.TryGit(nil, "update-ref", "-d", "refs/heads/"+gitBranch+suffix)
	return err
}
func (s *gitStore) requests() int64 { return int64(s.p.Connections()) }
