package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/poll"
)

// On the gossip backend a release is pushed to the other candidates by the
// releasing process, after the write: to the first in turn at once, to the
// others a turn step later. The example used to return from main right
// after the release without closing the lock, and pushes still in flight
// died with the process: in the gossip demo the next leader then waited
// out the whole lease (issue #27: two runs of four here). Three example
// processes, each a voter, with a 15 s lease: each SIGTERM must hand over
// from the release, in well under the lease, four times in a row (the
// stopped process is started again, with its state, before the next).
func TestExampleGossipReleaseReachesTheNextLeader(t *testing.T) {
	if testing.Short() {
		t.Skip("starts example processes")
	}
	bin := buildExample(t)
	dir := t.TempDir()
	key := gossipKey(t, dir)
	ids := []string{"p1", "p2", "p3"}
	addrs := map[string]string{}
	for _, id := range ids {
		addrs[id] = "127.0.0.1:" + strconv.Itoa(freePort(t))
		if err := os.Mkdir(filepath.Join(dir, id+"-state"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	const lease = 15 * time.Second
	start := func(id string) *proc {
		var join []string
		for _, o := range ids {
			join = append(join, addrs[o])
		}
		return spawnProc(t, bin, dir, id, freePort(t),
			"--work-interval=100ms", "--leader-elect-lease-duration="+lease.String(),
			"--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=1s",
			"--backend=gossip", "--gossip-voters="+strings.Join(ids, ","), "--gossip-join="+strings.Join(join, ","),
			"--gossip-bind="+addrs[id], "--gossip-key-file="+key, "--gossip-preset=loopback",
			"--gossip-state-dir="+filepath.Join(dir, id+"-state"))
	}
	procs := map[string]*proc{}
	for _, id := range ids {
		procs[id] = start(id)
	}
	leader := func(not string, after int64, within time.Duration) (*proc, int64) {
		var got *proc
		var term int64
		poll.Until(t, "a new leader", within, func() bool {
			for _, id := range ids {
				if id == not {
					continue
				}
				if s, ok := procs[id].status(); ok && s.Leading && s.Term > after {
					got, term = procs[id], s.Term
					return true
				}
			}
			return false
		})
		return got, term
	}
	// The first leader: at once, since the empty state directories prove
	// the lock new (without that proof, after a claim standing
	// RenewDeadline plus the lease).
	lead, term := leader("", 0, 2*lease+30*time.Second)
	for i := range 4 {
		// Every process up and answering before the leader stops.
		for _, id := range ids {
			p := procs[id]
			poll.Until(t, id+" answers", 30*time.Second, func() bool { _, ok := p.status(); return ok })
		}
		stopped := time.Now()
		if err := lead.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		next, nterm := leader(lead.id, term, lease+20*time.Second)
		took := time.Since(stopped)
		t.Logf("hand-over %d: %s -> %s (term %d) %v after SIGTERM (lease %v)", i, lead.id, next.id, nterm, took.Round(time.Millisecond), lease)
		if took > 5*time.Second {
			t.Errorf("hand-over %d: %s took over %v after %s's SIGTERM: it waited out the lease (%v) instead of hearing the release",
				i, next.id, took.Round(time.Millisecond), lead.id, lease)
		}
		if code := lead.exitCode(t, "SIGTERM"); code != 0 {
			t.Fatalf("%s exited %d after SIGTERM, want 0", lead.id, code)
		}
		// Started again at a new address, with its state.
		addrs[lead.id] = "127.0.0.1:" + strconv.Itoa(freePort(t))
		procs[lead.id] = start(lead.id)
		lead, term = next, nterm
	}
}

// gossipKey writes a test key for --gossip-key-file in dir and returns
// its path.
func gossipKey(t *testing.T, dir string) string {
	t.Helper()
	key := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(key, []byte("dGVzdCBrZXksIG5vdCBmb3IgcHJvZHVjdGlvbiEhISE="), 0o600); err != nil {
		t.Fatal(err)
	}
	return key
}
