package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/go-logr/logr/testr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	filelock "github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/shard"
)

// store is a backend under test, against its real server.
type store struct {
	name   string
	timing []string // git over HTTP spawns processes per call: slower
	// setup starts (or shares) the server and returns the flags and the
	// environment that name one lock on it.
	setup func(t *testing.T) (args, env []string)
}

// stores are the backends with a store, each against its real server; k8s
// shares the package's kube-apiserver, so name (the Lease's name) keeps a
// test's objects apart.
func stores(name string) []store {
	return []store{
		{"file", fast, func(t *testing.T) ([]string, []string) {
			return []string{"--backend=file", "--lock-file=" + filepath.Join(t.TempDir(), "leader.json")}, nil
		}},
		{"git", slow, func(t *testing.T) ([]string, []string) {
			repo := testserver.NewGitRepo(t)
			return []string{"--backend=git", "--git-url=http://" + repo.ServeHTTP(t, testserver.GitHTTPAuth{}) + "/" + repo.Name}, nil
		}},
		{"s3", fast, func(t *testing.T) ([]string, []string) {
			s := testserver.StartS3(t)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := s.Client(s.Endpoint).CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String("locks")}); err != nil {
				t.Fatal(err)
			}
			return []string{"--backend=s3", "--s3-endpoint=" + s.Endpoint, "--s3-bucket=locks", "--s3-path-style", "--s3-region=" + s.Region},
				[]string{"AWS_ACCESS_KEY_ID=" + s.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s.SecretKey}
		}},
		{"k8s", fast, func(t *testing.T) ([]string, []string) {
			kube := testserver.SharedKube(t)
			return []string{"--backend=k8s", "--kubeconfig=" + kube.Kubeconfig(t), "--leader-elect-resource-name=" + name}, nil
		}},
	}
}

// setEnv sets env (KEY=VALUE) for the test.
func setEnv(t *testing.T, env []string) {
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
}

// TestStatusOnEachBackend reads a lock with "status" on every backend
// against its real server: no record (exit 3), held by a "serve" sidecar
// (exit 0, holder and term, in text and JSON), released after the sidecar
// stops (exit 3).
func TestStatusOnEachBackend(t *testing.T) {
	for _, b := range stores("status-test") {
		t.Run(b.name, func(t *testing.T) {
			args, env := b.setup(t)
			setEnv(t, env)
			if code, st := readStatus(t, args...); code != exitFree || st.Exists || st.Held {
				t.Fatalf("before any candidate: status %d %+v, want %d and no record", code, st, exitFree)
			}
			dir := t.TempDir()
			p := start(t, dir, "a", append(append([]string{"serve", "--id=a", "--health-bind-address=127.0.0.1", "--port=" + strconv.Itoa(testserver.FreePort(t))}, b.timing...), args...)...)
			lease := strings.TrimPrefix(b.timing[0], "--leader-elect-lease-duration=")
			poll.Until(t, "status to show a holding the lock", 60*time.Second, func() bool {
				code, st := readStatus(t, args...)
				return code == exitOK && st.Held && st.Holder == "a" && st.Term == 1 && !st.Expired && st.LeaseDuration == lease && !st.RenewTime.IsZero()
			})
			code, out, stderr := leCommand(t, append([]string{"status"}, args...)...)
			if code != exitOK {
				t.Fatalf("status (text) exited %d: %s", code, stderr)
			}
			for _, want := range []string{"state:", "held", "holder:", " a\n", "term:", "acquired:", "renewed:", "lease duration:", lease, "expired:", "false"} {
				if !strings.Contains(out, want) {
					t.Errorf("status output lacks %q:\n%s", want, out)
				}
			}
			p.signal(t, syscall.SIGTERM)
			if code := p.wait(t, 30*time.Second); code != 0 {
				t.Fatalf("serve exited %d after SIGTERM", code)
			}
			if code, st := readStatus(t, args...); code != exitFree || st.Holder != "" || st.Term != 1 || !st.Exists {
				t.Fatalf("after release: status %d %+v, want %d, no holder, term 1", code, st, exitFree)
			}
		})
	}
}

// TestStatusShowsAClaim: a record with a holder and no acquireTime is a
// claim (its writer does not lead yet): held (exit 0), shown as claimed.
func TestStatusShowsAClaim(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leader.json")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := filelock.New(ctx, filelock.Options{Path: path, Identity: "a"})
	if err != nil {
		t.Fatal(err)
	}
	claim := lock.Record{HolderIdentity: "a", LeaseDurationSeconds: 60, RenewTime: metav1.Now(), LeaderTransitions: 1}
	if err := l.Create(ctx, claim); err != nil {
		t.Fatal(err)
	}
	args := []string{"--backend=file", "--lock-file=" + path}
	if code, st := readStatus(t, args...); code != exitOK || !st.Held || !st.Claim || st.Holder != "a" {
		t.Fatalf("status %d %+v, want %d, held, a claim by a", code, st, exitOK)
	}
	code, out, stderr := leCommand(t, append([]string{"status"}, args...)...)
	if code != exitOK || !strings.Contains(out, "claimed") {
		t.Fatalf("status (text) exited %d, output:\n%s\n%s\nwant 0 and the state claimed", code, out, stderr)
	}
	claim.AcquireTime = claim.RenewTime
	if err := l.Update(ctx, claim); err != nil {
		t.Fatal(err)
	}
	if code, st := readStatus(t, args...); code != exitOK || st.Claim {
		t.Fatalf("status %d %+v once confirmed, want %d, not a claim", code, st, exitOK)
	}
}

// TestStatusOfAnUnreachableStoreIsAnError: exit 1, naming the lock.
func TestStatusOfAnUnreachableStoreIsAnError(t *testing.T) {
	port := testserver.FreePort(t) // nothing listens
	code, _, stderr := leCommand(t, "status", "--backend=git", "--git-url=http://127.0.0.1:"+strconv.Itoa(port)+"/locks.git", "--timeout=10s")
	if code != exitError || !strings.Contains(stderr, "127.0.0.1:"+strconv.Itoa(port)) {
		t.Fatalf("status on an unreachable store: exit %d, stderr %q; want %d naming the lock", code, stderr, exitError)
	}
}

// TestStatusPrintsAShardSetsAssignment: a lock name with no record of
// its own but a shard set's records beside it (as example --shards
// writes them: backendflags.ShardLocks) is shown as the set: its
// generation, shard count and members with their shards, each live while
// its slot names it; exit 0 while a member is live, 3 once every member
// has left. On every backend with companion records, against its real
// server.
func TestStatusPrintsAShardSetsAssignment(t *testing.T) {
	for _, b := range stores(fmt.Sprintf("status-shards-%d", time.Now().UnixNano())) {
		t.Run(b.name, func(t *testing.T) {
			args, env := b.setup(t)
			setEnv(t, env)
			statusOfAShardSet(t, args)
		})
	}
}

func statusOfAShardSet(t *testing.T, args []string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	for _, id := range []string{"a", "b"} {
		c := newCommon("shards", io.Discard, io.Discard)
		if err := c.parse(args); err != nil {
			t.Fatal(err)
		}
		locks, closeLocks := c.backends.ShardLocks(id, &c.opt, "set")
		log := testr.New(t).WithName(id)
		opt := shard.Options{Name: "set", Locks: locks, Slots: 2, LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second, Logger: &log}
		go func() {
			defer closeLocks()
			done <- shard.Run(ctx, opt, 6, func(ctx context.Context, _ int) { <-ctx.Done() })
		}()
	}
	var st lockStatus
	poll.Until(t, "status to show a and b with 3 shards each", 60*time.Second, func() bool {
		var code int
		code, st = readStatus(t, args...)
		if code != exitOK || st.Shards == nil || st.Shards.Count != 6 || len(st.Shards.Members) != 2 {
			return false
		}
		for _, m := range st.Shards.Members {
			if !m.Live || len(m.Shards) != 3 {
				return false
			}
		}
		return true
	})
	if !strings.Contains(st.Lock, shard.AssignmentSuffix) || st.Shards.Generation < 1 {
		t.Fatalf("status of the set: %+v", st)
	}
	code, out, stderr := leCommand(t, append([]string{"status"}, args...)...)
	if code != exitOK {
		t.Fatalf("status (text) exited %d: %s", code, stderr)
	}
	for _, m := range st.Shards.Members {
		shards := strings.Trim(fmt.Sprint(m.Shards), "[]")
		for _, want := range []string{fmt.Sprintf("%s (slot %d, live):", m.Identity, m.Slot), "3 shards: " + shards} {
			if !strings.Contains(out, want) {
				t.Errorf("status output lacks %q:\n%s", want, out)
			}
		}
	}
	for _, want := range []string{"state:", "shard set", fmt.Sprintf("generation:  %d\n", st.Shards.Generation), "shards:", "6\n", "members:", "2\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	cancel()
	for range 2 {
		if err := <-done; err != nil {
			t.Fatalf("shard.Run: %v", err)
		}
	}
	code, st = readStatus(t, args...)
	if code != exitFree || st.Shards == nil || st.Shards.live() {
		t.Fatalf("after every member left: status %d %+v, want %d and no live member", code, st.Shards, exitFree)
	}
}
