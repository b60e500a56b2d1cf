package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/poll"
)

// A new gossip cluster elects: three and five example processes, each a
// voter, started together as a new StatefulSet starts its pods (example's
// durations, 2s/1.5s/1s).
//
//   - With empty state directories, the voters start a new election as
//     soon as they hear each other, and the first elector's read proves
//     the lock new (lock.ErrNeverWritten): it leads term 1 at once, and no
//     process claims the lock (a claim stands RenewDeadline + LeaseDuration,
//     3.5 s, before it leads). Before the proof no leader came before 11 s.
//   - Without state directories no voter can tell a first start from a
//     restart that forgot a record: the voters re-initialise the register
//     after --gossip-reinitialize-after, and the first elector then
//     claims the lock, as on a deleted record.
//
// With state directories the re-initialisation is set far off (a minute):
// both ways out of a fresh start are safe, and a re-initialisation comes
// only when no quorum of voters has heard each other for
// --gossip-reinitialize-after; at 3.5 s, a loaded CI machine (five -race
// processes joining beside other packages' tests) sometimes got there
// first, and the test then saw a claim instead of the new election it
// checks.
//
// The time to the first leader is logged; BenchmarkFirstLeaderOnNewLock
// (backend/gossip) measures it.
func TestExampleGossipNewClusterElects(t *testing.T) {
	if testing.Short() {
		t.Skip("starts example processes")
	}
	bin := buildExample(t)
	const (
		lease, renew, retry = 2 * time.Second, 1500 * time.Millisecond, time.Second
		reinit              = lease + renew
	)
	for _, n := range []int{3, 5} {
		for _, stateDirs := range []bool{true, false} {
			name := fmt.Sprintf("%d voters, empty state dirs", n)
			if !stateDirs {
				name = fmt.Sprintf("%d voters, no state dir", n)
			}
			t.Run(name, func(t *testing.T) {
				reinitAfter := reinit
				if stateDirs {
					reinitAfter = time.Minute // not the path under test (see above)
				}
				dir := t.TempDir()
				key := gossipKey(t, dir)
				var ids, addrs []string
				for i := 1; i <= n; i++ {
					ids = append(ids, fmt.Sprintf("p%d", i))
					addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(freePort(t)))
				}
				began := time.Now()
				var procs []*proc
				for i, id := range ids {
					args := []string{"--work-interval=100ms", "--leader-elect-lease-duration=" + lease.String(),
						"--leader-elect-renew-deadline=" + renew.String(), "--leader-elect-retry-period=" + retry.String(),
						"--backend=gossip", "--gossip-voters=" + strings.Join(ids, ","), "--gossip-join=" + strings.Join(addrs, ","),
						"--gossip-bind=" + addrs[i], "--gossip-key-file=" + key, "--gossip-preset=loopback",
						"--gossip-reinitialize-after=" + reinitAfter.String()}
					if stateDirs {
						state := filepath.Join(dir, id+"-state")
						if err := os.Mkdir(state, 0o700); err != nil {
							t.Fatal(err)
						}
						args = append(args, "--gossip-state-dir="+state)
					}
					procs = append(procs, spawnProc(t, bin, dir, id, freePort(t), args...))
				}
				var leader *proc
				var term int64
				// Generous: a claim after the re-initialisation, on a
				// loaded machine.
				poll.Until(t, "a leader", 2*(reinit+renew+lease)+20*time.Second, func() bool {
					for _, p := range procs {
						if s, ok := p.status(); ok && s.Leading {
							leader, term = p, s.Term
							return true
						}
					}
					return false
				})
				took := time.Since(began)
				logs := map[string]string{}
				for _, id := range ids {
					b, err := os.ReadFile(filepath.Join(dir, id+".log"))
					if err != nil {
						t.Fatal(err)
					}
					logs[id] = string(b)
				}
				claimed, reinitialised := "", ""
				for _, id := range ids {
					if strings.Contains(logs[id], `"Claimed the lock`) {
						claimed += " " + id
					}
					if strings.Contains(logs[id], "RE-INITIALISED THE REGISTER") {
						reinitialised += " " + id
					}
				}
				t.Logf("%s leads term %d %v after the first start (claimed by:%s; re-initialised by:%s)",
					leader.id, term, took.Round(time.Millisecond), claimed, reinitialised)
				if stateDirs {
					if term != 1 || claimed != "" || reinitialised != "" {
						t.Errorf("%s leads term %d, claims by%s, re-initialisations by%s: want term 1 from the proof that the lock is new, no claim and no re-initialisation",
							leader.id, term, claimed, reinitialised)
					}
					return
				}
				if reinitialised == "" || !strings.Contains(logs[leader.id], `"Claimed the lock`) {
					t.Errorf("%s leads term %d; re-initialised by%s, claimed by%s: want the register re-initialised and the leader's claim",
						leader.id, term, reinitialised, claimed)
				}
			})
		}
	}
}
