package gossip

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
	"github.com/b3df926d/leaderelection/internal/benchtest"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// voterProcessEnv, when set in the environment of this test binary, makes
// it a voter process (runVoterProcess) configured by its value (JSON,
// voterProcessConfig) instead of running tests.
const voterProcessEnv = "GOSSIP_TEST_VOTER_PROCESS"

// voterProcessTest is the test whose body a voter process runs.
const voterProcessTest = "TestVoterRestartedAsAProcessOnANewPortVotesAndHearsReleases"

type voterProcessConfig struct {
	Name     string   `json:"name"`
	Identity string   `json:"identity"`
	Voters   []string `json:"voters"`
	Join     []string `json:"join"`
	StateDir string   `json:"stateDir,omitempty"`
}

// A voter process reports on its stdout, one line each, with the time by
// its clock (Unix nanoseconds, the same clock as the test's: one machine):
// "event started NANOS" as its test function began (the process's own
// start-up is before), "event joined NANOS" once New returned, "event
// ready NANOS" once its acceptor answers (Ready), "event accepted NANOS" whenever
// its acceptor accepted a write, "event release NANOS" whenever it heard a
// push of a released record.
const eventPrefix = "event "

// runVoterProcess is a voter process: it joins as cfg says, at a port the
// kernel chooses, with the slow failure detector of the test (so that its
// crashed predecessor stays alive in every view), and reports until it is
// killed or its stdin closes (the test process is gone).
func runVoterProcess(t *testing.T, raw string) {
	started := time.Now()
	var cfg voterProcessConfig
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatalf("%s: %v", voterProcessEnv, err)
	}
	out := make(chan string, 1024)
	reportAt := func(what string, at time.Time) {
		select {
		case out <- fmt.Sprintf("%s%s %d", eventPrefix, what, at.UnixNano()):
		default: // the test reads only the first of each
		}
	}
	report := func(what string) { reportAt(what, time.Now()) }
	reportAt("started", started)
	logger := funcr.New(func(prefix, args string) { fmt.Fprintln(os.Stderr, prefix, args) }, funcr.Options{Verbosity: testVerbosity})
	o := Options{
		Name: cfg.Name, Identity: cfg.Identity, Voters: cfg.Voters, Join: cfg.Join, StateDir: cfg.StateDir,
		Bind: "127.0.0.1:0", SecretKey: testKey, Preset: PresetLoopback, Logger: &logger,
	}
	slowDetector(&o)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	l, err := New(ctx, o)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	// Set as New returns: an accept or a push in between, microseconds,
	// would be reported with the next one instead.
	accepted := func(k kind, _ string) {
		if k == kindAccepted {
			report("accepted")
		}
	}
	l.replied.Store(&accepted)
	pushed := func(e *envelope) {
		var v casp.Value
		if json.Unmarshal(e.Payload, &v) != nil {
			return
		}
		if rec, err := decodeRecord(v.Data); err == nil && rec.HolderIdentity == "" {
			report("release")
		}
	}
	l.pushed.Store(&pushed)
	report("joined")
	go func() {
		for l.Ready() != nil {
			time.Sleep(5 * time.Millisecond) // polling for the figure
		}
		report("ready")
	}()
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0) // the test process is gone
	}()
	for line := range out {
		fmt.Println(line)
	}
}

// processRestarts restarts voter v3 of a three-voter cluster (the others,
// and the writer w, in this test process) as a process of its own, at a
// new port each time: first after the in-process v3 crashed, then after
// the previous v3 process was killed (SIGKILL). w is cut off from v1, so
// that each of its writes needs the restarted v3's vote, and w writes,
// holding and releasing the record in turn, from the moment each process
// is started until that process has accepted a write and heard a
// release.
type processRestarts struct {
	c        *cluster
	w        *Lock
	bin, dir string
	n        int
	prev     *exec.Cmd
	prevAddr string
	held     bool
}

// restartFigures are one restart's times from starting the process.
type restartFigures struct {
	started, joined, ready, accepted, release time.Duration
}

func (f restartFigures) String() string {
	r := func(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
	return fmt.Sprintf("from the process's start: its test function began %v, New returned %v, ready %v, it accepted a write %v, heard a release %v",
		r(f.started), r(f.joined), r(f.ready), r(f.accepted), r(f.release))
}

func newProcessRestarts(tb testing.TB, stateDirs bool) *processRestarts {
	tb.Helper()
	bin, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	c := newCluster(tb, 3, stateDirs, slowDetector)
	w := c.start("w", nil)
	c.waitMembers(4)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := w.Create(ctx, locktest.NewRecord("w", 1)); err != nil {
		tb.Fatal(err)
	}
	r := &processRestarts{c: c, w: w, bin: bin, dir: tb.TempDir(), held: true, prevAddr: c.lock("v3").Addr()}
	c.crash("v3")
	c.net.Cut("w", "v1")
	c.net.Cut("v1", "w")
	return r
}

// restart kills the current v3 process (if any), starts the next one and
// returns its figures.
func (r *processRestarts) restart(tb testing.TB) restartFigures {
	tb.Helper()
	if r.prev != nil {
		_ = r.prev.Process.Kill()
		_ = r.prev.Wait()
	}
	r.n++
	raw, err := json.Marshal(voterProcessConfig{
		Name: r.c.name, Identity: "v3", Voters: r.c.voters, Join: r.c.seedsExcept("v3"), StateDir: r.c.dirs["v3"],
	})
	if err != nil {
		tb.Fatal(err)
	}
	logPath := filepath.Join(r.dir, fmt.Sprintf("v3-%d.log", r.n))
	logf, err := os.Create(logPath)
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(r.bin, "-test.run=^"+voterProcessTest+"$")
	cmd.Env = append(os.Environ(), voterProcessEnv+"="+string(raw))
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	began := time.Now()
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	r.prev = cmd
	tb.Cleanup(func() { _ = stdin.Close(); _ = cmd.Process.Kill(); _ = cmd.Wait(); _ = logf.Close() })
	events := make(chan [2]string, 1024)
	go func() {
		defer close(events)
		s := bufio.NewScanner(stdout)
		for s.Scan() {
			line, ok := strings.CutPrefix(s.Text(), eventPrefix)
			if f := strings.Fields(line); ok && len(f) == 2 {
				select {
				case events <- [2]string{f[0], f[1]}:
				default: // restart returned: nobody reads
				}
			} else {
				fmt.Fprintln(logf, s.Text()) // the test's own output: a failure
			}
		}
	}()

	var got restartFigures
	at := func(nanos string) time.Duration {
		n, err := strconv.ParseInt(nanos, 10, 64)
		if err != nil {
			tb.Fatalf("a voter process reported the time %q", nanos)
		}
		return time.Unix(0, n).Sub(began)
	}
	failed := func(format string, args ...any) {
		tb.Helper()
		out, _ := os.ReadFile(logPath)
		tb.Fatalf("restart %d: %s\nthe process's output:\n%s", r.n, fmt.Sprintf(format, args...), out)
	}
	deadline := time.Now().Add(20 * time.Second)
	writeDone := make(chan error, 1)
	writing := false
	for got.ready == 0 || got.accepted == 0 || got.release == 0 {
		if !writing {
			writing = true
			go func() { writeDone <- r.write() }()
		}
		select {
		case e, ok := <-events:
			if !ok {
				failed("the process ended")
			}
			switch d := at(e[1]); {
			case e[0] == "started" && got.started == 0:
				got.started = d
			case e[0] == "joined" && got.joined == 0:
				got.joined = d
			case e[0] == "ready" && got.ready == 0:
				got.ready = d
			case e[0] == "accepted" && got.accepted == 0:
				got.accepted = d
			case e[0] == "release" && got.release == 0:
				got.release = d
			}
		case err := <-writeDone:
			writing = false
			if err != nil {
				tb.Logf("restart %d: w's write %v after the start: %v", r.n, time.Since(began).Round(time.Millisecond), err)
			}
		case <-time.After(time.Until(deadline)):
			failed("within 20 s of its start, it reported %+v (0: not yet)", got)
		}
	}
	if writing {
		<-writeDone
	}
	if addr := r.addrOfV3(); addr == "" || addr == r.prevAddr {
		tb.Fatalf("restart %d: w knows v3 at %q, its previous address %s: the test needs a new one", r.n, addr, r.prevAddr)
	} else {
		r.prevAddr = addr
	}
	return got
}

// write has w hold or release the record, whichever it does not now.
func (r *processRestarts) write() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	rec := lock.Record{LeaderTransitions: 1}
	if !r.held {
		rec = locktest.NewRecord("w", 1)
	}
	err := r.w.Update(ctx, rec)
	if err == nil {
		r.held = !r.held
	} else if lock.IsConflict(err) {
		// An earlier write of unknown outcome was chosen: read it.
		if got, _, err := r.w.Get(ctx); err == nil {
			r.held = got != nil && got.HolderIdentity == "w"
		}
	}
	return err
}

// addrOfV3 is the address w sends v3's messages to.
func (r *processRestarts) addrOfV3() string {
	r.w.tr.mu.Lock()
	defer r.w.tr.mu.Unlock()
	return r.w.tr.alive["v3"]
}

// A voter restarted at a new address, as a Kubernetes pod is, as a process
// of its own (its predecessor crashed, or was killed: its port refuses at
// once, while memberlist, tuned slow here, would list it alive for a
// minute): it is admitted, votes, and hears releases, with and without a
// StateDir. The times from the process's start are logged, and measured
// by BenchmarkVoterRestartedAsAProcessOnANewPort. With memberlist's node
// name per identity instead of per process, memberlist refused the new
// process until the old one was declared dead, and pushes went to the old
// address.
func TestVoterRestartedAsAProcessOnANewPortVotesAndHearsReleases(t *testing.T) {
	if raw := os.Getenv(voterProcessEnv); raw != "" {
		runVoterProcess(t, raw)
		return
	}
	if testing.Short() {
		t.Skip("starts voter processes")
	}
	for _, stateDirs := range []bool{true, false} {
		t.Run(fmt.Sprintf("StateDir=%v", stateDirs), func(t *testing.T) {
			r := newProcessRestarts(t, stateDirs)
			for i := range 2 {
				t.Logf("restart %d: %v", i+1, r.restart(t))
			}
		})
	}
}

// BenchmarkVoterRestartedAsAProcessOnANewPort measures, from the start of
// a restarted voter's process at a new port (the test's setup, see
// processRestarts), how long until its test function begins (ms/started:
// the process's own start-up, a test binary's), until New returns
// (ms/joined), until its acceptor answers (ms/ready: with a StateDir at
// once, without one once it recovered its record from the others), until
// it first accepts a write (ms/vote: the writer is cut off from another
// voter, so its writes need this one; it includes the writer's pause
// before retrying a round that failed while this voter was not ready) and
// until it first hears a release (ms/release: the writer releases every
// other write, so this includes up to one write after the vote). The
// target is 1 s for the last two.
//
//	go test -run '^$' -bench VoterRestartedAsAProcess -benchtime 10x ./backend/gossip
func BenchmarkVoterRestartedAsAProcessOnANewPort(b *testing.B) {
	for _, stateDirs := range []bool{true, false} {
		b.Run(fmt.Sprintf("StateDir=%v", stateDirs), func(b *testing.B) {
			r := newProcessRestarts(b, stateDirs)
			var sum restartFigures
			var worst time.Duration
			for i := 0; i < b.N; i++ {
				f := r.restart(b)
				b.Logf("restart %d: %v", i+1, f)
				sum.started += f.started
				sum.joined += f.joined
				sum.ready += f.ready
				sum.accepted += f.accepted
				sum.release += f.release
				worst = max(worst, f.accepted, f.release)
			}
			n := float64(b.N)
			b.ReportMetric(benchtest.Millis(sum.started)/n, "ms/started")
			b.ReportMetric(benchtest.Millis(sum.joined)/n, "ms/joined")
			b.ReportMetric(benchtest.Millis(sum.ready)/n, "ms/ready")
			b.ReportMetric(benchtest.Millis(sum.accepted)/n, "ms/vote")
			b.ReportMetric(benchtest.Millis(sum.release)/n, "ms/release")
			b.ReportMetric(benchtest.Millis(worst), "ms/worst")
		})
	}
}
