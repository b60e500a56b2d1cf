package gossip

import (
	"context"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"

	leaderelection "github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

// get returns the status and body of GET url.
func get(url string) (int, string, error) {
	resp, err := http.Get(url) //nolint:noctx // a probe, as the kubelet's
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// waitStatus polls url until it answers want, and returns the body.
func waitStatus(t *testing.T, url string, want int, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		code, body, err := get(url)
		if err == nil && code == want {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: want %d within %v, last: %d %q %v", url, want, within, code, body, err)
		}
		time.Sleep(50 * time.Millisecond) // polling a condition with a deadline
	}
}

// A voter restarted without its state, run as the example runs it
// (leaderelection.Run with a health server), fails /readyz with the check
// "gossip" while the other voters are cut off from it, and passes once the
// network heals and it has recovered its record from them: what the
// StatefulSet's readiness probe waits for during a rolling restart.
func TestReadyzFailsWhileARestartedVoterRecovers(t *testing.T) {
	c := newCluster(t, 3, false, fastReinit)
	el := newElection(c, testDurations)
	el.run("v1")
	el.run("v2")
	el.leaderAmong([]string{"v1", "v2"}, 30*time.Second) // a record to recover

	c.net.Isolate("v3", c.voters)
	lk := c.restart("v3")
	port := testserver.FreePort(t)
	discard := logr.Discard()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- leaderelection.Run(ctx, leaderelection.Option{
			Lock: lk, Port: port, HealthBindAddress: "127.0.0.1", Logger: &discard, ReleaseOnCancel: true,
			LeaseDuration: testDurations.LeaseDuration, RenewDeadline: testDurations.RenewDeadline, RetryPeriod: testDurations.RetryPeriod,
			Run: func(ctx context.Context) { <-ctx.Done() },
		})
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	base := "http://127.0.0.1:" + strconv.Itoa(port)

	// Cut off: it cannot recover, so it is not ready, for as long as the
	// cut lasts (several of its recovery attempts).
	body := waitStatus(t, base+"/readyz/gossip", http.StatusInternalServerError, 10*time.Second)
	if !strings.Contains(body, "recovering") {
		t.Errorf("/readyz/gossip while recovering says %q; want it to name the recovery", body)
	}
	for end := time.Now().Add(4 * lk.resend); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if code, body, err := get(base + "/readyz?verbose"); err != nil || code != http.StatusInternalServerError || !strings.Contains(body, "[-]gossip failed") {
			t.Fatalf("/readyz while v3 is cut off and recovering: %d %q %v; want 500 with the gossip check failed", code, body, err)
		}
	}
	if code, _, err := get(base + "/livez"); err != nil || code != http.StatusOK {
		t.Errorf("/livez while recovering: %d %v; want 200 (recovering is not a wedge: a restart would not help)", code, err)
	}

	c.net.Heal()
	waitStatus(t, base+"/readyz/gossip", http.StatusOK, 30*time.Second)
	if err := lk.Ready(); err != nil {
		t.Errorf("/readyz/gossip passes but Ready: %v", err)
	}
	// The whole of /readyz passes too once its store calls succeed again.
	waitStatus(t, base+"/readyz", http.StatusOK, 30*time.Second)
}
