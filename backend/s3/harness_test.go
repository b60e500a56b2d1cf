package s3_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	s3lock "github.com/b3df926d/leaderelection/backend/s3"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
)

const bucket = "leaderelection"

// store is an S3 server for a test: versitygw or gofakes3, with a proxy in
// front that can stall it.
type store struct {
	endpoint string // the server itself
	addr     string // its host:port
	proxy    *testserver.Proxy
	client   func(endpoint string, optFns ...func(*awss3.Options)) *awss3.Client
}

// startVersityGW starts a real S3 server with the test bucket.
func startVersityGW(t testing.TB) *store {
	t.Helper()
	srv := testserver.StartS3(t)
	srv.CreateBucket(t, bucket)
	return &store{endpoint: srv.Endpoint, addr: srv.Addr, proxy: testserver.StartProxy(t, srv.Addr), client: srv.Client}
}

// startGoFakeS3 starts gofakes3 in process, with the test bucket; wrap, if
// not nil, sits between the clients and gofakes3.
func startGoFakeS3(t *testing.T, wrap func(http.Handler) http.Handler) *store {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(bucket); err != nil {
		t.Fatal(err)
	}
	var h http.Handler = gofakes3.New(backend).Server()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	client := func(endpoint string, optFns ...func(*awss3.Options)) *awss3.Client {
		return testserver.S3Client(endpoint, "us-east-1", "fake", "fake-secret", optFns...)
	}
	addr := strings.TrimPrefix(srv.URL, "http://")
	return &store{endpoint: srv.URL, addr: addr, proxy: testserver.StartProxy(t, addr), client: client}
}

// viaProxy returns a client whose requests pass the proxy; optFns adjust it.
func (s *store) viaProxy(optFns ...func(*awss3.Options)) *awss3.Client {
	return s.client("http://"+s.proxy.Addr(), optFns...)
}

// direct returns a client that bypasses the proxy.
func (s *store) direct() *awss3.Client { return s.client(s.endpoint) }

// counted returns a client through the proxy whose requests c counts.
func (s *store) counted(c *testserver.RequestCounter) *awss3.Client {
	return s.viaProxy(withCounter(c))
}

// withCounter makes a client send its requests through c.
func withCounter(c *testserver.RequestCounter) func(*awss3.Options) {
	return func(o *awss3.Options) { o.HTTPClient = &http.Client{Transport: c} }
}

func key(name string) string { return "locks/" + name + ".json" }

func newLock(t testing.TB, client *awss3.Client, name, identity string, tune func(*s3lock.Options)) *s3lock.Lock {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	opts := s3lock.Options{Client: client, Bucket: bucket, Key: key(name), Identity: identity}
	if tune != nil {
		tune(&opts)
	}
	l, err := s3lock.New(ctx, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return l
}

// harness runs lock/locktest against a store.
type harness struct {
	s    *store
	tune func(*s3lock.Options)
}

func (h *harness) NewLock(t *testing.T, name, identity string) lock.Interface {
	return newLock(t, h.s.viaProxy(), name, identity, h.tune)
}

func (h *harness) Corrupt(t *testing.T, name string) {
	t.Helper()
	body := []byte("{not json")
	_, err := h.s.direct().PutObject(context.Background(), &awss3.PutObjectInput{
		Bucket: aws.String(bucket), Key: aws.String(key(name)), Body: bytes.NewReader(body), ContentLength: aws.Int64(int64(len(body))),
	})
	if err != nil {
		t.Fatalf("corrupting %s: %v", name, err)
	}
}

func (h *harness) Stored(t *testing.T, name string) []byte {
	t.Helper()
	out, err := h.s.direct().GetObject(context.Background(), &awss3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key(name))})
	var api smithy.APIError
	if errors.As(err, &api) && api.ErrorCode() == "NoSuchKey" {
		return nil
	}
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	defer out.Body.Close()
	raw, err := io.ReadAll(out.Body)
	if err != nil {
		t.Fatalf("reading %s: %v", name, err)
	}
	return raw
}

// Delete deletes the lock object, as an operator's `aws s3 rm` would.
func (h *harness) Delete(t *testing.T, name string) {
	t.Helper()
	if _, err := h.s.direct().DeleteObject(context.Background(), &awss3.DeleteObjectInput{Bucket: aws.String(bucket), Key: aws.String(key(name))}); err != nil {
		t.Fatalf("deleting %s: %v", name, err)
	}
}

// electionHarness gives every candidate's lock a client and a proxy of its
// own, so that one candidate can be cut off from the store.
type electionHarness struct {
	harness // Delete
	testserver.ProxyCutter
}

// Block stalls every candidate's proxy.
func (h *electionHarness) Block(t *testing.T, name string) func() {
	return h.ProxyCutter.Block(t, name)
}

func newElectionHarness(s *store) *electionHarness {
	return &electionHarness{harness: harness{s: s}}
}

func (h *electionHarness) NewLock(t *testing.T, name, identity string) lock.Interface {
	p := testserver.StartProxy(t, h.s.addr)
	l := newLock(t, h.s.client("http://"+p.Addr()), name, identity, h.tune)
	h.Track(l, p)
	return l
}

// Block stalls the whole store, which covers the record called name.
func (h *harness) Block(*testing.T, string) func() { return h.s.proxy.Stall() }
