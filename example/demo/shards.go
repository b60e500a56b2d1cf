package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/internal/fence"
)

// runShards is the sharded mode: three replicas of example --shards=m;
// it kills one, starts one, stops one, and after each prints who owns
// what and how long until every shard was owned again.
func runShards(keep bool, kind string, m int, extra []string) error {
	if kind == "gossip" {
		return fmt.Errorf("--shards=%d: --backend=gossip keeps one record per election and cannot hold a shard set; use file, git, or another backend with its flags after --", m)
	}
	dir, bin, cleanup, err := prepare(keep)
	if err != nil {
		return err
	}
	defer cleanup()
	args, where, err := backendArgs(kind, dir, extra)
	if err != nil {
		return err
	}
	fenceAt := filepath.Join(dir, "fence")
	args = append([]string{"--shards=" + strconv.Itoa(m), "--fence-file=" + fenceAt}, args...)
	var live, all []*replica
	defer func() {
		for _, r := range all {
			r.stop(syscall.SIGKILL)
		}
	}()
	launch := func(id string) error {
		r, err := start(bin, dir, id, args)
		if err != nil {
			return err
		}
		live, all = append(live, r), append(all, r)
		return nil
	}
	for i := 1; i <= 3; i++ {
		if err := launch("replica-" + strconv.Itoa(i)); err != nil {
			return err
		}
	}
	say("Started 3 replicas of %d shards on the %s backend (%s), lease %v, renew deadline %v, retry %v.", m, kind, where, lease, renew, retry)
	t0 := time.Now()
	before, gen, err := settled(live, m)
	if err != nil {
		return err
	}
	say("Every shard owned, generation %d, %v after start:", gen, ms(time.Since(t0)))
	show(live, before)

	var rows []string
	step := func(event, why string, act func() error) error {
		say("%s: %s", event, why)
		at := time.Now()
		if err := act(); err != nil {
			return err
		}
		after, gen, err := settled(live, m)
		if err != nil {
			return err
		}
		took := time.Since(at)
		moved := 0
		for s, o := range after {
			if before[s] != o {
				moved++
			}
		}
		say("Every shard owned again, generation %d, %v after it; %d shards moved:", gen, ms(took), moved)
		show(live, after)
		rows = append(rows, fmt.Sprintf("| %s | %d | %v | %d |", event, moved, ms(took), gen))
		before = after
		return nil
	}
	drop := func(r *replica) { live = slices.DeleteFunc(live, func(x *replica) bool { return x == r }) }
	if err := step("SIGKILL "+all[0].id, "it cannot release its slot; the others evict it once its lease has run out on their clocks, then take its shards.", func() error {
		all[0].stop(syscall.SIGKILL)
		drop(all[0])
		return nil
	}); err != nil {
		return err
	}
	if err := step("start replica-4", "it joins; the others give up only the shards it gets, and it starts each only after its old owner stopped it.", func() error {
		return launch("replica-4")
	}); err != nil {
		return err
	}
	stopped := all[1]
	if err := step("SIGTERM "+stopped.id, "it stops its shards, releases its slot and exits 0; the others take its shards at once.", func() error {
		drop(stopped)
		return stopped.cmd.Process.Signal(syscall.SIGTERM)
	}); err != nil {
		return err
	}
	if err := stopped.wait(); err != nil {
		return fmt.Errorf("%s after SIGTERM: %w", stopped.id, err)
	}
	say("%s exited with status 0.", stopped.id)
	for _, r := range live {
		r.stop(syscall.SIGTERM)
	}
	for _, r := range live {
		if err := r.wait(); err != nil {
			return fmt.Errorf("%s after SIGTERM: %w", r.id, err)
		}
	}

	fmt.Println()
	fmt.Println("| event | shards moved | until every shard was owned again | generation |")
	fmt.Println("|---|---|---|---|")
	fmt.Println(strings.Join(rows, "\n"))
	fmt.Println()
	writes, err := checkShardFencing(fenceAt, m)
	if err != nil {
		return err
	}
	say("Fencing check: %d writes through the %d shards' sinks; none came from a term older than one its shard's sink had accepted.", writes, m)
	if keep {
		say("Logs kept in %s", dir)
	}
	return nil
}

// shardStatus reads a replica's /status in the sharded mode.
func (r *replica) shardStatus() (*healthz.Shards, bool) {
	c := http.Client{Timeout: 200 * time.Millisecond}
	resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(r.port) + "/status")
	if err != nil {
		return nil, false
	}
	defer resp.Body.Close()
	var s healthz.Status
	return s.Shards, json.NewDecoder(resp.Body).Decode(&s) == nil && s.Shards != nil
}

// settled polls the live replicas' /status until they own every shard,
// each once, balanced, under one generation; it returns each shard's
// owner.
func settled(live []*replica, m int) ([]string, int64, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if owners, gen, ok := owned(live, m); ok {
			return owners, gen, nil
		}
		time.Sleep(10 * time.Millisecond) // polling interval of the demo's observer
	}
	return nil, 0, fmt.Errorf("the shards were not all owned, balanced, within %v", timeout)
}

// owned reads every live replica's shards once.
func owned(live []*replica, m int) ([]string, int64, bool) {
	owners := make([]string, m)
	var gen int64
	n := 0
	for i, r := range live {
		sh, ok := r.shardStatus()
		if !ok || (i > 0 && sh.Generation != gen) {
			return nil, 0, false
		}
		gen = sh.Generation
		if k := len(sh.Owned); k != m/len(live) && k != (m+len(live)-1)/len(live) {
			return nil, 0, false
		}
		for _, o := range sh.Owned {
			if owners[o.Shard] != "" {
				return nil, 0, false // between two reads; read again
			}
			owners[o.Shard] = r.id
			n++
		}
	}
	return owners, gen, n == m
}

// show prints each live replica's shards.
func show(live []*replica, owners []string) {
	for _, r := range live {
		var mine []string
		for s, o := range owners {
			if o == r.id {
				mine = append(mine, strconv.Itoa(s))
			}
		}
		say("  %s: %s", r.id, strings.Join(mine, " "))
	}
}

// checkShardFencing reads every shard's fencing sink: a write from a term
// older than one the sink accepted would be counted as rejected.
func checkShardFencing(fenceAt string, m int) (int64, error) {
	var writes int64
	for s := range m {
		st, err := fence.Open(fenceAt + "." + strconv.Itoa(s)).ReadState()
		if err != nil {
			return 0, err
		}
		if st.Rejected > 0 {
			return 0, fmt.Errorf("FENCING VIOLATION: shard %d's sink rejected %d writes from an older term", s, st.Rejected)
		}
		writes += st.Accepted
	}
	return writes, nil
}
