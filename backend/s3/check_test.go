package s3_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	s3lock "github.com/b3df926d/leaderelection/backend/s3"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// dropHeaders makes gofakes3 behave like a store (or a proxy in front of
// one) that ignores the named request headers.
func dropHeaders(names ...string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for _, n := range names {
				r.Header.Del(n)
			}
			next.ServeHTTP(w, r)
		})
	}
}

func TestNewRefusesStoreThatIgnoresConditionalWrites(t *testing.T) {
	for _, dropped := range [][]string{
		{"If-None-Match", "If-Match"},
		{"If-None-Match"},
		{"If-Match"},
	} {
		t.Run("ignores "+strings.Join(dropped, ","), func(t *testing.T) {
			s := startGoFakeS3(t, dropHeaders(dropped...))
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			client := s.direct()
			_, err := s3lock.New(ctx, s3lock.Options{Client: client, Bucket: bucket, Key: "locks/unsafe.json", Identity: "a"})
			if err == nil {
				t.Fatal("New accepted a store that ignores conditional writes")
			}
			if !errors.Is(err, s3lock.ErrUnsafeStore) {
				t.Errorf("error %v does not wrap ErrUnsafeStore", err)
			}
			if !strings.Contains(err.Error(), s.endpoint) {
				t.Errorf("error %q does not name the endpoint %s", err, s.endpoint)
			}
			t.Logf("refused: %v", err)
			// The probe is cleaned up and the lock object never touched.
			if got := (&harness{s: s}).Stored(t, "unsafe"); got != nil {
				t.Errorf("the check wrote the lock object: %q", got)
			}
			if n := countObjects(t, client); n != 0 {
				t.Errorf("%d objects left in the bucket after the check", n)
			}
		})
	}
}

func TestNewAcceptsStoreThatEnforcesConditionalWrites(t *testing.T) {
	s := startGoFakeS3(t, nil)
	l := newLock(t, s.direct(), "safe", "a", nil)
	if n := countObjects(t, s.direct()); n != 0 {
		t.Errorf("%d objects left in the bucket after the check", n)
	}
	if got, want := l.Describe(), "s3://"+bucket+"/locks/safe.json"; got != want {
		t.Errorf("Describe() = %q, want %q", got, want)
	}
}

func TestSkipConditionalWriteCheckMakesNoRequest(t *testing.T) {
	s := startGoFakeS3(t, nil)
	_, err := s3lock.New(context.Background(), s3lock.Options{
		Client: s.client("http://127.0.0.1:1"), Bucket: bucket, Key: "k", Identity: "a", SkipConditionalWriteCheck: true,
	})
	if err != nil {
		t.Fatalf("New with the check skipped: %v", err)
	}
}

func TestNewNamesMissingBucket(t *testing.T) {
	s := startGoFakeS3(t, nil)
	_, err := s3lock.New(context.Background(), s3lock.Options{Client: s.direct(), Bucket: "no-such-bucket", Key: "k", Identity: "a"})
	if err == nil || !strings.Contains(err.Error(), "NoSuchBucket") || !strings.Contains(err.Error(), "s3://no-such-bucket/k") {
		t.Fatalf("New on a missing bucket: %v; want an error naming the lock and NoSuchBucket", err)
	}
}

func TestNewValidatesOptions(t *testing.T) {
	_, err := s3lock.New(context.Background(), s3lock.Options{})
	for _, field := range []string{"Bucket", "Key"} {
		if err == nil || !strings.Contains(err.Error(), field) {
			t.Errorf("New(Options{}) = %v; want an error naming %s", err, field)
		}
	}
}

// An empty Identity is lock.DefaultIdentity(), as for every backend. New
// makes no request here (no conditional-write check), so the endpoint
// points nowhere.
func TestEmptyIdentityDefaults(t *testing.T) {
	t.Setenv("POD_NAME", "pod-x")
	l, err := s3lock.New(context.Background(), s3lock.Options{Bucket: "b", Key: "k", Endpoint: "http://127.0.0.1:1", SkipConditionalWriteCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := l.Identity(); got != "pod-x" || got != lock.DefaultIdentity() {
		t.Fatalf("Identity() = %q, want lock.DefaultIdentity() %q", got, lock.DefaultIdentity())
	}
}

// Options without a Client build one from the standard AWS chain plus the
// custom endpoint, as RunOrDie's flags do.
func TestNewBuildsClientForCustomEndpoint(t *testing.T) {
	s := startGoFakeS3(t, nil)
	t.Setenv("AWS_ACCESS_KEY_ID", "fake")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "fake-secret")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	ctx := context.Background()
	l, err := s3lock.New(ctx, s3lock.Options{Bucket: bucket, Key: key("built"), Identity: "a", Endpoint: s.endpoint, UsePathStyle: true})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if err := l.Create(ctx, locktest.NewRecord("a", 1)); err != nil {
		t.Fatalf("Create: %v", err)
	}
	if got := (&harness{s: s}).Stored(t, "built"); got == nil {
		t.Fatal("the lock object was not written to the custom endpoint")
	}
}

func countObjects(t *testing.T, c *awss3.Client) int {
	t.Helper()
	out, err := c.ListObjectsV2(context.Background(), &awss3.ListObjectsV2Input{Bucket: &[]string{bucket}[0]})
	if err != nil {
		t.Fatalf("listing: %v", err)
	}
	return len(out.Contents)
}
