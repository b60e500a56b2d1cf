package git_test

import (
	"context"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/backend/git"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/electiontest"
)

// electionHarness gives every candidate's lock a proxy of its own to the
// server, so that one candidate can be cut off.
type electionHarness struct {
	*harness               // Delete
	srv                    served
	testserver.ProxyCutter // CutOff, Block
}

func newElectionHarness(srv served) *electionHarness {
	return &electionHarness{harness: &harness{repo: srv.repo}, srv: srv}
}

func (h *electionHarness) NewLock(t *testing.T, name, id string) lock.Interface {
	t.Helper()
	p, url := h.srv.proxy(t)
	l, err := git.New(context.Background(), h.srv.config(url, name, id))
	if err != nil {
		t.Fatal(err)
	}
	h.Track(l, p)
	return l
}

// The shared elector scenarios (lock/electiontest), each with proxies of
// its own to one server per transport: all of them over smart HTTP (the
// branch deleted under a leader, TermLimit hand-overs, a killed leader, a
// graceful release then a leader cut off by a stalled proxy then a
// take-over, an outage), and the cut-off over git daemon and ssh too.
func TestElectorScenarios(t *testing.T) {
	// Every git call forks git on the server, and a renewal or take-over
	// takes several calls: durations with room for a loaded machine.
	opts := electiontest.Options{LeaseDuration: 10 * time.Second, RenewDeadline: 7 * time.Second, RetryPeriod: 2 * time.Second}
	cutOff := opts
	cutOff.Only = []string{"ReleaseThenCutOffThenTakeOver"}
	for _, tr := range []struct {
		name  string
		serve func(testing.TB) served
		opts  electiontest.Options
	}{
		{"smart-http", func(t testing.TB) served { return serveHTTP(t, testserver.GitHTTPAuth{}, nil) }, opts},
		{"git-daemon", serveDaemon, cutOff},
		{"ssh", func(t testing.TB) served { return serveSSH(t, false) }, cutOff},
	} {
		t.Run(tr.name, func(t *testing.T) {
			srv := tr.serve(t)
			electiontest.RunScenarios(t, func(*testing.T) electiontest.Harness { return newElectionHarness(srv) }, tr.opts)
		})
	}
}
