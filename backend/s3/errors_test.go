package s3_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	s3lock "github.com/b3df926d/leaderelection/backend/s3"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
)

// cannedS3 answers GET with a valid lock object and every PUT with the
// given status and S3 error code, counting the PUTs and GETs it sees. The
// marker that a record was written (<key>.written) exists, and its
// requests are not counted.
type cannedS3 struct {
	putStatus, getStatus int
	code                 string
	puts, gets           atomic.Int32
}

func (c *cannedS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.URL.Path, ".written") {
		if r.Method == http.MethodPut {
			w.WriteHeader(http.StatusPreconditionFailed) // If-None-Match: * on an object that exists
		}
		return
	}
	status := c.getStatus
	if r.Method == http.MethodPut {
		c.puts.Add(1)
		status = c.putStatus
	} else {
		c.gets.Add(1)
	}
	if status == http.StatusOK {
		w.Header().Set("ETag", `"0123456789abcdef0123456789abcdef"`)
		if r.Method == http.MethodGet {
			fmt.Fprint(w, `{"generation":3,"nonce":"00","record":{"holderIdentity":"a","leaseDurationSeconds":15,"acquireTime":null,"renewTime":null,"leaderTransitions":1}}`)
		}
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>canned</Message></Error>`, c.code)
	}
}

func cannedLock(t *testing.T, c *cannedS3) *s3lock.Lock {
	t.Helper()
	srv := httptest.NewServer(c)
	t.Cleanup(srv.Close)
	client := testserver.S3Client(srv.URL, "us-east-1", "fake", "fake-secret")
	l, err := s3lock.New(context.Background(), s3lock.Options{
		Client: client, Bucket: bucket, Key: "k.json", Identity: "b", SkipConditionalWriteCheck: true, ReleaseCheckInterval: s3lock.NoCache,
	})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// Each answer S3 (or a compatible store) gives a conditional write is
// classified once, and no write is ever retried by the SDK: a retry of a
// write that landed would fail against itself.
func TestUpdateClassifiesAnswersWithoutRetrying(t *testing.T) {
	for _, tc := range []struct {
		status   int
		code     string
		conflict bool
	}{
		{http.StatusPreconditionFailed, "PreconditionFailed", true},
		{http.StatusConflict, "ConditionalRequestConflict", true},
		{http.StatusNotFound, "NoSuchKey", true}, // If-Match on an object that is gone
		{http.StatusNotFound, "NoSuchBucket", false},
		{http.StatusConflict, "OperationAborted", false},
		{http.StatusServiceUnavailable, "SlowDown", false},
		{http.StatusInternalServerError, "InternalError", false},
		{http.StatusForbidden, "AccessDenied", false},
	} {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.code), func(t *testing.T) {
			c := &cannedS3{putStatus: tc.status, getStatus: http.StatusOK, code: tc.code}
			l := cannedLock(t, c)
			ctx := context.Background()
			if _, _, err := l.Get(ctx); err != nil {
				t.Fatalf("Get: %v", err)
			}
			err := l.Update(ctx, lock.Record{HolderIdentity: "b"})
			if err == nil {
				t.Fatal("Update succeeded against a refusing store")
			}
			if got := lock.IsConflict(err); got != tc.conflict {
				t.Errorf("lock.IsConflict(%v) = %v, want %v", err, got, tc.conflict)
			}
			if n := c.puts.Load(); n != 1 {
				t.Errorf("%d PUT requests for one Update, want 1 (no SDK retries)", n)
			}
		})
	}
}

func TestGetClassifiesAnswersWithoutRetrying(t *testing.T) {
	for _, tc := range []struct {
		status   int
		code     string
		notFound bool
	}{
		{http.StatusNotFound, "NoSuchKey", true},
		{http.StatusNotFound, "NoSuchBucket", false},
		{http.StatusServiceUnavailable, "SlowDown", false},
		{http.StatusInternalServerError, "InternalError", false},
	} {
		t.Run(fmt.Sprintf("%d %s", tc.status, tc.code), func(t *testing.T) {
			c := &cannedS3{getStatus: tc.status, code: tc.code}
			l := cannedLock(t, c)
			_, _, err := l.Get(context.Background())
			if err == nil {
				t.Fatal("Get succeeded against a refusing store")
			}
			if got := lock.IsNotFound(err); got != tc.notFound {
				t.Errorf("lock.IsNotFound(%v) = %v, want %v", err, got, tc.notFound)
			}
			if lock.IsConflict(err) {
				t.Errorf("Get error %v reports a conflict", err)
			}
			if n := c.gets.Load(); n != 1 {
				t.Errorf("%d GET requests for one Get, want 1 (no SDK retries)", n)
			}
		})
	}
}

// A store that always answers 503 must not keep a caller with backoff and
// retries; the elector's own loop does the retrying. Each call sends one
// request (counted, not timed: a loaded machine makes any time bound
// flaky, and a quick retry would pass one).
func TestFailingStoreReturnsWithinContext(t *testing.T) {
	c := &cannedS3{putStatus: http.StatusServiceUnavailable, getStatus: http.StatusServiceUnavailable, code: "SlowDown"}
	l := cannedLock(t, c)
	ctx := context.Background()
	if _, _, err := l.Get(ctx); err == nil {
		t.Fatal("Get succeeded")
	}
	if err := l.Create(ctx, lock.Record{HolderIdentity: "b"}); err == nil {
		t.Fatal("Create succeeded")
	}
	if gets, puts := c.gets.Load(), c.puts.Load(); gets != 1 || puts != 1 {
		t.Errorf("%d GET and %d PUT requests for one failing Get and one failing Create, want 1 each: the SDK retried", gets, puts)
	}
}
