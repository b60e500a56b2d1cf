package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/backend/gossip/gossiptest"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

// faultTag is the build tag of the example the gossip campaign needs: it
// adds --gossip-fault-file (internal/backendflags/gossip_faultinject.go),
// through which the campaign partitions the replicas.
const faultTag = "lefaultinject"

// gossipStore: no store at all; the replicas are the voters. Each has a
// fixed memberlist port (the others' seeds) and a StateDir, kept across its
// restarts unless a fault wipes it. Partitions go through the plan file
// every replica follows (gossiptest.Plan).
type gossipStore struct {
	dir, key, plan string
	ids            []string
	addrs          map[string]string
	gen            int64
}

func newGossipStore(tb testing.TB, replicas int, dir string) (*gossipStore, error) {
	s := &gossipStore{dir: dir, key: filepath.Join(dir, "gossip.key"), plan: filepath.Join(dir, "partition.json"), addrs: map[string]string{}}
	// A test key: the replicas' traffic is encrypted as in production.
	if err := os.WriteFile(s.key, []byte("ZmF1bHQgY2FtcGFpZ24ga2V5LCBub3QgYSBzZWNyZXQ="), 0o600); err != nil {
		return nil, err
	}
	for i := range replicas {
		id := replicaID(i)
		s.ids = append(s.ids, id)
		s.addrs[id] = "127.0.0.1:" + strconv.Itoa(testserver.FreePort(tb))
		if err := os.Mkdir(s.stateDir(i), 0o700); err != nil {
			return nil, err
		}
	}
	return s, s.write(nil)
}

func (s *gossipStore) stateDir(slot int) string {
	return filepath.Join(s.dir, replicaID(slot)+"-state")
}

func (s *gossipStore) args() []string {
	var join []string
	for _, id := range s.ids {
		join = append(join, s.addrs[id])
	}
	return []string{"--backend=gossip", "--gossip-name=" + lockName, "--gossip-voters=" + strings.Join(s.ids, ","),
		"--gossip-join=" + strings.Join(join, ","), "--gossip-key-file=" + s.key, "--gossip-preset=loopback",
		"--gossip-fault-file=" + s.plan}
}

func (s *gossipStore) replicaArgs(slot int) []string {
	return []string{"--gossip-bind=" + s.addrs[replicaID(slot)], "--gossip-state-dir=" + s.stateDir(slot)}
}

func (s *gossipStore) env() []string            { return nil }
func (s *gossipStore) proxy() *testserver.Proxy { return nil }
func (s *gossipStore) restart() error           { return errors.New("the gossip backend has no server") }
func (s *gossipStore) deleteRecord(string) error {
	return errors.New("the gossip backend has no record to delete")
}
func (s *gossipStore) requests() int64 { return -1 }

// outage cuts every voter off from every other: no quorum anywhere, so
// no record can be read or written, until restore heals.
func (s *gossipStore) outage(running []*replica) (func() error, error) {
	var groups [][]string
	for _, id := range s.ids {
		groups = append(groups, []string{id})
	}
	if err := s.partition(groups, running); err != nil {
		return nil, err
	}
	return func() error { return s.partition(nil, running) }, nil
}

// write publishes a new plan: groups partition the replicas (none: heal).
func (s *gossipStore) write(groups [][]string) error {
	s.gen++
	return gossiptest.WritePlan(s.plan, gossiptest.Plan{Gen: s.gen, Addrs: s.addrs, Groups: groups})
}

// partition publishes groups (nil heals) and waits until every replica in
// running has applied them.
func (s *gossipStore) partition(groups [][]string, running []*replica) error {
	if err := s.write(groups); err != nil {
		return err
	}
	return s.applied(running, true)
}

// applied waits until every replica in running has applied the current
// plan. One that exits meanwhile is fine if exitedOK (it reads the plan
// when it starts again); at the campaign's start it is an example that
// lacks the fault hook, or a bad configuration.
func (s *gossipStore) applied(running []*replica, exitedOK bool) error {
	deadline := time.Now().Add(settleTimeout)
	for _, r := range running {
		for gossiptest.Applied(s.plan, r.id) < s.gen {
			if r.exited() {
				if exitedOK {
					break
				}
				return fmt.Errorf("%s exited at start: the gossip campaign needs the example built with -tags %s (it adds --gossip-fault-file); log %s:\n%s", r.id, faultTag, r.log, tail(r.log))
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not apply partition plan %d within %v (an example built without -tags %s?); log %s", r.id, s.gen, settleTimeout, faultTag, r.log)
			}
			time.Sleep(5 * time.Millisecond) // polling the replica's acknowledgement file
		}
	}
	return nil
}

// tail returns the end of a log file.
func tail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// wipe empties a replica's StateDir: it restarts with no memory of its
// promises or of the record.
func (s *gossipStore) wipe(slot int) error {
	if err := os.RemoveAll(s.stateDir(slot)); err != nil {
		return err
	}
	return os.Mkdir(s.stateDir(slot), 0o700)
}
