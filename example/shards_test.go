package main

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/internal/fence"
	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

// shardStatus reads p's /status in sharded mode.
func (p *proc) shardStatus() (healthz.Status, bool) {
	resp, err := statusClient.Get("http://127.0.0.1:" + strconv.Itoa(p.port) + "/status")
	if err != nil {
		return healthz.Status{}, false
	}
	defer resp.Body.Close()
	var s healthz.Status
	return s, json.NewDecoder(resp.Body).Decode(&s) == nil && s.Shards != nil
}

// spread reads every process's /status and reports whether they own all
// m shards, each exactly once, want each (the owned shards as the
// processes report them, and why not).
func spread(procs []*proc, m, want int) (owned [][]int, why string) {
	owner := map[int]string{}
	for _, p := range procs {
		st, ok := p.shardStatus()
		if !ok {
			return owned, p.id + ": no /status"
		}
		var mine []int
		for _, o := range st.Shards.Owned {
			mine = append(mine, o.Shard)
			if other, dup := owner[o.Shard]; dup {
				return owned, fmt.Sprintf("shard %d owned by %s and %s", o.Shard, other, p.id)
			}
			owner[o.Shard] = p.id
		}
		owned = append(owned, mine)
		if len(mine) != want {
			why = fmt.Sprintf("%s owns %d shards, want %d", p.id, len(mine), want)
		}
	}
	if why == "" && len(owner) != m {
		why = fmt.Sprintf("%d of %d shards owned", len(owner), m)
	}
	return owned, why
}

// Three copies with --shards=12 on one store settle at 4 shards each,
// none owned twice, and /status shows the same assignment on all three;
// a SIGTERM on one hands its 4 to the other two (6 each) and it exits 0.
// Every shard's writes went through its own fencing sink, which never
// saw a term go backwards. On a lock file, on S3 (versitygw) and on
// Leases of the real kube-apiserver.
func TestShardedCopiesSplitTheShardsAndTakeOverAStoppedOnes(t *testing.T) {
	bin := buildExample(t)
	t.Run("file", func(t *testing.T) {
		shardedCopies(t, bin, "--backend=file", "--lock-file="+filepath.Join(t.TempDir(), "leader.json"))
	})
	t.Run("s3", func(t *testing.T) {
		srv := testserver.StartS3(t)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := srv.Client(srv.Endpoint).CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String("locks")}); err != nil {
			t.Fatal(err)
		}
		t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
		t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
		shardedCopies(t, bin, "--backend=s3", "--s3-endpoint="+srv.Endpoint, "--s3-bucket=locks", "--s3-path-style", "--s3-region="+srv.Region)
	})
	t.Run("k8s", func(t *testing.T) {
		kube := testserver.SharedKube(t)
		// A name of its own: the server outlives the test (-count).
		name := fmt.Sprintf("sharded-example-%d", time.Now().UnixNano())
		shardedCopies(t, bin, "--backend=k8s", "--kubeconfig="+kube.Kubeconfig(t), "--leader-elect-resource-name="+name)
	})
}

func shardedCopies(t *testing.T, bin string, backend ...string) {
	dir := t.TempDir()
	const m = 12
	fenceAt := filepath.Join(dir, "fence")
	var procs []*proc
	for _, id := range []string{"s1", "s2", "s3"} {
		procs = append(procs, spawnProc(t, bin, dir, id, freePort(t), append([]string{"--shards=" + strconv.Itoa(m),
			"--fence-file=" + fenceAt, "--work-interval=50ms", "--leader-elect-lease-duration=2s", "--leader-elect-renew-deadline=1500ms",
			"--leader-elect-retry-period=1s"}, backend...)...))
	}
	var why string
	if !poll.Within(60*time.Second, func() bool { _, why = spread(procs, m, m/3); return why == "" }) {
		t.Fatalf("three copies did not settle at 4 shards each: %s", why)
	}
	owned, _ := spread(procs, m, m/3)
	var gen int64
	for i, p := range procs {
		st, _ := p.shardStatus()
		sh := st.Shards
		if sh.Count != m || sh.Slot < 0 || len(sh.Members) != 3 || sh.Generation < 1 || !st.Leading || st.Identity != p.id {
			t.Fatalf("%s's /status: %+v, shards %+v", p.id, st, sh)
		}
		if i == 0 {
			gen = sh.Generation
		} else if sh.Generation != gen {
			t.Fatalf("%s reports generation %d, %s %d", p.id, sh.Generation, procs[0].id, gen)
		}
		for _, mem := range sh.Members {
			if mem.Identity == p.id && (mem.Slot != sh.Slot || !slices.Equal(mem.Shards, owned[i])) {
				t.Fatalf("%s's /status lists it as %+v, but it owns %v in slot %d", p.id, mem, owned[i], sh.Slot)
			}
		}
		for _, o := range sh.Owned {
			if o.Term < 1 || o.Term > sh.Generation {
				t.Fatalf("%s runs shard %d in term %d, generation %d", p.id, o.Shard, o.Term, sh.Generation)
			}
		}
	}
	t.Logf("settled in generation %d: %v", gen, owned)

	if err := procs[2].cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	rest := procs[:2]
	if !poll.Within(30*time.Second, func() bool { _, why = spread(rest, m, m/2); return why == "" }) {
		t.Fatalf("after %s stopped, the other two did not own 6 shards each: %s", procs[2].id, why)
	}
	took := time.Since(stopped)
	if code := procs[2].exitCode(t, "SIGTERM"); code != 0 {
		t.Fatalf("%s exited %d after SIGTERM, want 0", procs[2].id, code)
	}
	after, _ := spread(rest, m, m/2)
	for i := range rest {
		for _, s := range owned[i] {
			if !slices.Contains(after[i], s) {
				t.Errorf("%s lost shard %d when %s stopped (before %v, after %v)", rest[i].id, s, procs[2].id, owned[i], after[i])
			}
		}
	}
	t.Logf("%s stopped; the others own %v after %v (polled)", procs[2].id, after, took.Round(time.Millisecond))

	_, body := get(t, rest[0], "/metrics")
	st, _ := rest[0].shardStatus()
	for _, want := range []string{fmt.Sprintf(`leader_election_shards_owned{name=%q} 6`, st.Name), fmt.Sprintf(`leader_election_shard_move_duration_seconds_count{name=%q}`, st.Name)} {
		if !strings.Contains(body, want) {
			t.Errorf("%s's /metrics lacks %q", rest[0].id, want)
		}
	}
	// Every shard's current owner writes in its term (the moved ones too),
	// and no sink took a write from an older term.
	for _, p := range rest {
		st, _ := p.shardStatus()
		for _, o := range st.Shards.Owned {
			sink := fence.Open(fenceAt + "." + strconv.Itoa(o.Shard))
			poll.Until(t, fmt.Sprintf("%s's write to shard %d in term %d", p.id, o.Shard, o.Term), 30*time.Second, func() bool {
				st, err := sink.ReadState()
				return err == nil && st.Highest == o.Term
			})
		}
	}
	writes := 0
	for s := range m {
		st, err := fence.Open(fenceAt + "." + strconv.Itoa(s)).ReadState()
		if err != nil {
			t.Fatal(err)
		}
		if st.Rejected != 0 {
			t.Errorf("shard %d's fencing sink rejected %d writes from an older term", s, st.Rejected)
		}
		writes += int(st.Accepted)
	}
	t.Logf("%d writes through the %d fencing sinks, none rejected", writes, m)
}
