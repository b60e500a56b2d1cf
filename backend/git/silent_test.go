package git_test

import (
	"context"
	"net"
	"testing"
	"time"

	gitlock "github.com/b3df926d/leaderelection/backend/git"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// A git daemon that closes connections without a word (restarting, or a
// connection dropped by a proxy): go-git then waits up to ten seconds for
// an error line, ignoring the context. The fault campaign saw a candidate's
// Get hang for ten seconds with a RenewDeadline of 1.5 s, so that it read
// nothing while a fresh candidate's claim stood. Get, and the write paths
// through the same listing, must return when their context ends.
func TestGetOnASilentServerEndsWithItsContext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	testserver.ServeConns(t, ln, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 512)) // the request line; then hang up without a word
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := gitlock.New(ctx, gitlock.Options{URL: "git://" + ln.Addr().String() + "/locks.git", Name: "silent", Identity: "a"})
	if err != nil {
		t.Fatal(err)
	}
	for _, op := range []struct {
		name string
		call func(context.Context) error
	}{
		{"Get", func(ctx context.Context) error { _, _, err := l.Get(ctx); return err }},
		{"Create", func(ctx context.Context) error { return l.Create(ctx, locktest.NewRecord("a", 1)) }},
	} {
		actx, acancel := context.WithTimeout(ctx, time.Second)
		done := make(chan error, 1)
		go func() { done <- op.call(actx) }()
		select {
		case err := <-done:
			if err == nil {
				t.Errorf("%s on a server that hangs up succeeded", op.name)
			}
		case <-time.After(5 * time.Second): // the context ends after 1s; go-git alone waits 10s
			t.Errorf("%s did not return 4s after its context ended", op.name)
			<-done
		}
		acancel()
	}
}
