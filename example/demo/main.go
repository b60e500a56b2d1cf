// Command demo shows a failover on one machine with no infrastructure: it
// builds the example, starts three replicas on the file backend, shows which
// leads and its term, kills the leader with SIGKILL, then stops the next
// leader gracefully with SIGTERM, and prints how long each takeover took.
// It exits by itself.
//
//	go run ./example/demo
//
// --backend=git runs the same on a local bare repository it creates;
// --backend=gossip on no store at all: five replicas that are also the
// voters (five, so that a majority is still up after the demo has stopped
// two of them), each with a StateDir, an encryption key it writes,
// memberlist on 127.0.0.1;
// --backend=s3 (or any backend) takes the backend's flags after "--":
//
//	go run ./example/demo --backend=s3 -- --s3-endpoint=http://127.0.0.1:7070 --s3-bucket=locks --s3-path-style
//
// --shards=12 runs the sharded mode (example --shards, docs/shards.md):
// three replicas split 12 shards; it kills one, starts one, stops one,
// and prints who owns what and how long each move took.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/b3df926d/leaderelection/internal/freeport"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const (
	lease   = 2 * time.Second
	renew   = 1500 * time.Millisecond
	retry   = time.Second
	timeout = 30 * time.Second
)

type replica struct {
	id   string
	port int
	cmd  *exec.Cmd
	done chan error
}

type status struct {
	Leading bool   `json:"leading"`
	Leader  string `json:"leader"`
	Term    int64  `json:"term"`
}

func main() {
	keep := flag.Bool("keep", false, "keep the temporary directory with the replicas' logs")
	kind := flag.String("backend", "file", "the example's lock backend: file, git (a local bare repository), or another one with its flags after --")
	shards := flag.Int("shards", 0, "if above 0, the sharded mode: three replicas split this many shards (example --shards); one is killed, one started, one stopped")
	flag.Parse()
	var err error
	if *shards > 0 {
		err = runShards(*keep, *kind, *shards, flag.Args())
	} else {
		err = run(*keep, *kind, flag.Args())
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(keep bool, kind string, extra []string) error {
	dir, bin, cleanup, err := prepare(keep)
	if err != nil {
		return err
	}
	defer cleanup()

	workLog := filepath.Join(dir, "work.log")
	backendArgs, where, err := backendArgs(kind, dir, extra)
	if err != nil {
		return err
	}
	var reps []*replica
	defer func() {
		for _, r := range reps {
			r.stop(syscall.SIGKILL)
		}
	}()
	n := 3
	if kind == "gossip" {
		n = len(gossipBinds)
	}
	for i := 1; i <= n; i++ {
		id := "replica-" + strconv.Itoa(i)
		args := backendArgs
		if bind := gossipBinds[id]; bind != "" {
			state := filepath.Join(dir, id+"-state")
			if err := os.Mkdir(state, 0o700); err != nil {
				return err
			}
			args = append(append([]string(nil), args...), "--gossip-bind="+bind, "--gossip-state-dir="+state)
		}
		r, err := start(bin, dir, id, append([]string{"--work-log=" + workLog}, args...))
		if err != nil {
			return err
		}
		reps = append(reps, r)
	}
	say("Started %d replicas on the %s backend (%s), lease %v, renew deadline %v, retry %v.", n, kind, where, lease, renew, retry)

	t0 := time.Now()
	first, st, err := waitLeader(reps, nil)
	if err != nil {
		return err
	}
	say("%s leads, term %d (elected %v after start).", first.id, st.Term, ms(time.Since(t0)))
	work(reps, 2*time.Second)

	say("SIGKILL %s: it cannot release; the others wait out the lease on their own clocks.", first.id)
	killed := time.Now()
	first.stop(syscall.SIGKILL)
	second, st, err := waitLeader(reps, first)
	if err != nil {
		return err
	}
	crash := time.Since(killed)
	say("%s took over, term %d, %v after the kill (lease %v).", second.id, st.Term, ms(crash), lease)
	work(reps, 2*time.Second)

	say("SIGTERM %s: it stops its work, releases the lock, and exits 0.", second.id)
	stopped := time.Now()
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return err
	}
	third, st, err := waitLeader(reps, second)
	if err != nil {
		return err
	}
	graceful := time.Since(stopped)
	fromRelease := byRelease(graceful)
	if fromRelease {
		say("%s took over, term %d, %v after SIGTERM: from the release (%s).", third.id, st.Term, ms(graceful), wakeUp(kind))
	} else {
		say("%s took over, term %d, %v after SIGTERM: NOT from the release; it waited for %s's lease (%v) to run out (see the replicas' logs: --keep).",
			third.id, st.Term, ms(graceful), second.id, lease)
	}
	if err := second.wait(); err != nil {
		return fmt.Errorf("%s after SIGTERM: %w", second.id, err)
	}
	say("%s exited with status 0.", second.id)
	work(reps, time.Second)
	third.stop(syscall.SIGTERM)
	if err := third.wait(); err != nil {
		return fmt.Errorf("%s after SIGTERM: %w", third.id, err)
	}

	terms, err := checkFencing(workLog)
	if err != nil {
		return err
	}
	fmt.Println()
	fmt.Println("| takeover | how | time |")
	fmt.Println("|---|---|---|")
	fmt.Printf("| %s -> %s | SIGKILL (crash) | %v (lease %v) |\n", first.id, second.id, ms(crash), lease)
	cause := "from the release"
	if !fromRelease {
		cause = "NOT from the release: the lease ran out"
	}
	fmt.Printf("| %s -> %s | SIGTERM (graceful release) | %v (%s) |\n", second.id, third.id, ms(graceful), cause)
	fmt.Println()
	say("Fencing check: %s", terms)
	if keep {
		say("Logs kept in %s", dir)
	}
	return nil
}

// gossipBinds is each replica's --gossip-bind, for --backend=gossip.
var gossipBinds map[string]string

// backendArgs returns the example's flags for the chosen backend and a
// description of where the lock lives.
func backendArgs(kind, dir string, extra []string) ([]string, string, error) {
	args := []string{"--backend=" + kind}
	switch kind {
	case "file":
		lockFile := filepath.Join(dir, "leader.json")
		return append(append(args, "--lock-file="+lockFile), extra...), "lock " + lockFile, nil
	case "git":
		repo := filepath.Join(dir, "locks.git")
		if out, err := exec.Command("git", "init", "--quiet", "--bare", repo).CombinedOutput(); err != nil {
			return nil, "", fmt.Errorf("git init --bare %s: %v: %s", repo, err, out)
		}
		return append(append(args, "--git-url="+repo), extra...), "bare repository " + repo, nil
	case "gossip":
		key := filepath.Join(dir, "gossip.key")
		if err := os.WriteFile(key, []byte("ZGVtbyBrZXksIG5vdCBmb3IgcHJvZHVjdGlvbiEhISE="), 0o600); err != nil {
			return nil, "", err
		}
		var voters, join []string
		gossipBinds = map[string]string{}
		for i := 1; i <= 5; i++ {
			port, err := freePort()
			if err != nil {
				return nil, "", err
			}
			id := "replica-" + strconv.Itoa(i)
			addr := "127.0.0.1:" + strconv.Itoa(port)
			voters, join = append(voters, id), append(join, addr)
			gossipBinds[id] = addr
		}
		args = append(args, "--gossip-voters="+strings.Join(voters, ","), "--gossip-join="+strings.Join(join, ","),
			"--gossip-key-file="+key, "--gossip-preset=loopback")
		return append(args, extra...), "no store: the replicas vote, memberlist on " + strings.Join(join, ","), nil
	default:
		if len(extra) == 0 {
			return nil, "", fmt.Errorf("--backend=%s needs the backend's flags after --", kind)
		}
		return append(args, extra...), strings.Join(extra, " "), nil
	}
}

// byRelease reports whether a take-over that came graceful after the
// leader's SIGTERM came from its release rather than from its lease running
// out. The leader renews every retry period, so the lease it last renewed
// runs at least lease - retry past the SIGTERM: a take-over sooner than
// that was caused by the release (in practice tens of milliseconds after
// it; a lease running out shows as a take-over 1 to 2 s after SIGTERM
// here).
func byRelease(graceful time.Duration) bool { return graceful < lease-retry }

// wakeUp says how followers learn of a release on each backend.
func wakeUp(kind string) string {
	switch kind {
	case "file":
		return "the file watcher woke it"
	case "k8s":
		return "its watch on the Lease woke it"
	case "gossip":
		return "the release was pushed to it"
	default:
		return "at its next poll: this backend cannot watch"
	}
}

// start starts replica id of the example with the demo's durations and
// args (the backend's flags, and what the mode adds).
func start(bin, dir, id string, args []string) (*replica, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, id+".log"))
	if err != nil {
		return nil, err
	}
	args = append([]string{"--id=" + id, "--port=" + strconv.Itoa(port), "--health-bind-address=127.0.0.1",
		"--work-interval=200ms",
		"--leader-elect-lease-duration=" + lease.String(), "--leader-elect-renew-deadline=" + renew.String(),
		"--leader-elect-retry-period=" + retry.String()}, args...)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	r := &replica{id: id, port: port, cmd: cmd, done: make(chan error, 1)}
	go func() { r.done <- cmd.Wait(); logf.Close() }()
	return r, nil
}

func (r *replica) stop(sig syscall.Signal) {
	if r.cmd.ProcessState == nil {
		_ = r.cmd.Process.Signal(sig)
	}
}

func (r *replica) wait() error {
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(timeout):
		return errors.New("did not exit")
	}
}

func (r *replica) status() (status, bool) {
	c := http.Client{Timeout: 200 * time.Millisecond}
	resp, err := c.Get("http://127.0.0.1:" + strconv.Itoa(r.port) + "/status")
	if err != nil {
		return status{}, false
	}
	defer resp.Body.Close()
	var s status
	return s, json.NewDecoder(resp.Body).Decode(&s) == nil
}

// waitLeader polls every replica's /status until one other than not leads.
func waitLeader(reps []*replica, not *replica) (*replica, status, error) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		for _, r := range reps {
			if r == not {
				continue
			}
			if s, ok := r.status(); ok && s.Leading {
				return r, s, nil
			}
		}
		time.Sleep(10 * time.Millisecond) // polling interval of the demo's observer
	}
	return nil, status{}, fmt.Errorf("no new leader within %v", timeout)
}

// work lets the leader work for d while printing who leads.
func work(reps []*replica, d time.Duration) {
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		var line []string
		for _, r := range reps {
			if s, ok := r.status(); ok {
				state := "follower"
				if s.Leading {
					state = fmt.Sprintf("LEADER term %d", s.Term)
				}
				line = append(line, r.id+": "+state)
			} else {
				line = append(line, r.id+": down")
			}
		}
		say("  %s", strings.Join(line, " | "))
		time.Sleep(500 * time.Millisecond) // the demo's display interval
	}
}

// checkFencing reads the work log: every unit of work is stamped with its
// leader's term; a downstream store would reject a term older than one it
// has seen. Terms must never go backwards.
func checkFencing(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	var last int64
	units := map[int64]int{}
	var order []int64
	for i, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			return "", fmt.Errorf("work log line %d malformed: %q", i+1, line)
		}
		term, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return "", fmt.Errorf("work log line %d: %w", i+1, err)
		}
		if term < last {
			return "", fmt.Errorf("FENCING VIOLATION: work log line %d has term %d after term %d", i+1, term, last)
		}
		if term != last {
			order = append(order, term)
		}
		last = term
		units[term]++
	}
	var parts []string
	for _, t := range order {
		parts = append(parts, fmt.Sprintf("term %d: %d units", t, units[t]))
	}
	return "terms only increase (" + strings.Join(parts, ", ") + ").", nil
}

// prepare makes the demo's directory and builds the example into it;
// cleanup removes the directory unless keep.
func prepare(keep bool) (dir, bin string, cleanup func(), err error) {
	dir, err = os.MkdirTemp("", "leaderelection-demo-")
	if err != nil {
		return "", "", nil, err
	}
	cleanup = func() {
		if !keep {
			os.RemoveAll(dir)
		}
	}
	bin = filepath.Join(dir, "example")
	say("Building the example (go build ./example)...")
	root, err := moduleRoot()
	if err == nil {
		build := exec.Command("go", "build", "-o", bin, "./example")
		build.Dir, build.Stdout, build.Stderr = root, os.Stdout, os.Stderr
		if err = build.Run(); err != nil {
			err = fmt.Errorf("building the example: %w", err)
		}
	}
	if err != nil {
		cleanup()
		return "", "", nil, err
	}
	return dir, bin, cleanup, nil
}

func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("run the demo from inside the leaderelection module")
	}
	return filepath.Dir(mod), nil
}

func freePort() (int, error) { return freeport.Pick() }

func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }

func say(format string, args ...any) {
	fmt.Printf("%s  %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
}
