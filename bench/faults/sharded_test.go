package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeShardReplica is a replica the observer reads: an HTTP server whose
// /status lists the shards (shard → term) it is told to.
type fakeShardReplica struct {
	*replica
	mu    sync.Mutex
	owned map[int]int64
}

func newFakeShardReplica(t *testing.T, id string) *fakeShardReplica {
	f := &fakeShardReplica{owned: map[int]int64{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		type owned struct {
			Shard int   `json:"shard"`
			Term  int64 `json:"term"`
		}
		st := struct {
			Shards struct {
				Slot  int     `json:"slot"`
				Owned []owned `json:"owned"`
			} `json:"shards"`
		}{}
		for s, term := range f.owned {
			st.Shards.Owned = append(st.Shards.Owned, owned{s, term})
		}
		json.NewEncoder(w).Encode(st)
	}))
	t.Cleanup(srv.Close)
	u, err := url.Parse(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	f.replica = &replica{id: id, port: port, done: make(chan struct{})}
	return f
}

func (f *fakeShardReplica) set(owned map[int]int64) {
	f.mu.Lock()
	f.owned = owned
	f.mu.Unlock()
}

// writeSinkLog writes shard s's sink log as the example would have:
// "ok|rejected TERM ID UNIXNANO" per line.
func writeSinkLog(t *testing.T, c *campaign, s int, lines ...string) {
	t.Helper()
	if err := os.WriteFile(c.shardSink(s)+".log", []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// The checker of the sharded mode, fed an unsafe history, reports each
// violation: two live replicas listing one shard at once, a shard's term
// going backwards, a shard's sink fencing a write from a replica never
// paused, a term written by two identities, a sink that accepted terms out
// of order. The same history with the replica paused in its tenure is
// excused (a stale owner after a pause, as fencing expects), so the check
// is no stricter than the protocol.
func TestShardCheckerReportsAnOverlappingHistory(t *testing.T) {
	for _, paused := range []bool{false, true} {
		t.Run(fmt.Sprintf("paused=%v", paused), func(t *testing.T) {
			cfg := DefaultConfig("file")
			cfg.Shards, cfg.Replicas = 3, 2
			dir := t.TempDir()
			c := &campaign{cfg: cfg, tb: t, rng: rand.New(rand.NewSource(1)), dir: dir, sinkPath: filepath.Join(dir, "fence"),
				paused: map[string]map[int64]bool{}, pauses: map[string][]pauseSpan{}, res: newResult(cfg)}
			c.sobs = newShardObserver(c)
			a, b := newFakeShardReplica(t, "r0"), newFakeShardReplica(t, "r1")
			c.slots = []*replica{a.replica, b.replica}
			t0 := time.Now()
			ctx := context.Background()

			// r0 runs shards 0 and 1 in term 4; then r1 takes shard 0 in
			// term 5 while r0 still lists it; then r1 runs shard 1 in term
			// 7, and r0 lists shard 1 again in term 6.
			if paused {
				// Stopped from the start, and it lists what it ran before
				// whenever it is read (the observer reads no replica while
				// the campaign has it stopped; r0 woke up after each read).
				c.pauses["r0"] = []pauseSpan{{from: t0}}
			}
			a.set(map[int]int64{0: 4, 1: 4})
			b.set(map[int]int64{2: 4})
			c.sobs.round(ctx)
			b.set(map[int]int64{0: 5, 2: 4})
			c.sobs.round(ctx)
			a.set(map[int]int64{})
			b.set(map[int]int64{0: 5, 1: 7, 2: 4})
			c.sobs.round(ctx)
			a.set(map[int]int64{1: 6})
			c.sobs.round(ctx)

			at := func(d time.Duration) string { return strconv.FormatInt(t0.Add(d).UnixNano(), 10) }
			// Shard 0: r0's write in term 4 fenced after r1's in term 5.
			writeSinkLog(t, c, 0, "ok 4 r0 "+at(0), "ok 5 r1 "+at(time.Millisecond), "rejected 4 r0 "+at(2*time.Millisecond))
			// Shard 1: term 7 written by r1 and by r0; then term 6 accepted.
			writeSinkLog(t, c, 1, "ok 7 r1 "+at(0), "ok 7 r0 "+at(time.Millisecond), "ok 6 r0 "+at(2*time.Millisecond))
			// Shard 2: a safe history.
			writeSinkLog(t, c, 2, "ok 4 r1 "+at(0), "ok 4 r1 "+at(time.Millisecond))
			c.finishShards()
			r := c.res

			// Moves: shard 0 from r0 to r1, shard 1 from r0 to r1, and
			// unless r0 is a stale owner, shard 1 back to r0.
			wantMoves := 3
			if paused {
				wantMoves = 2
			}
			if r.Transitions != wantMoves || r.ShardTenures != wantMoves {
				t.Errorf("%d moves, %d new tenures; want %d of each", r.Transitions, r.ShardTenures, wantMoves)
			}
			// Violations the pause does not excuse: r0 and r1 both wrote
			// term 7 of shard 1; shard 1's sink accepted 6 after 7.
			if r.TermsHeldTwice != 1 || r.OutOfOrderWrites != 1 {
				t.Errorf("%d terms held twice, %d writes out of order; want 1 and 1:\n%s", r.TermsHeldTwice, r.OutOfOrderWrites, strings.Join(r.Violations, "\n"))
			}
			if r.Safe() {
				t.Errorf("the history is judged safe: %+v", r)
			}
			// The overlaps (observed on shards 0 and 1, and in shard 0's
			// sink) and the term that went backwards: violations unless
			// r0 was paused.
			wantOverlaps, wantRegressions := 3, 1
			if paused {
				wantOverlaps, wantRegressions = 0, 0
			}
			if r.Overlaps != wantOverlaps || r.TermRegressions != wantRegressions {
				t.Errorf("%d overlaps, %d terms backwards; want %d and %d:\n%s", r.Overlaps, r.TermRegressions, wantOverlaps, wantRegressions, strings.Join(r.Violations, "\n"))
			}
			if paused && r.StaleLeaderReports == 0 {
				t.Errorf("no stale report from the paused replica: %+v", r)
			}
		})
	}
}
