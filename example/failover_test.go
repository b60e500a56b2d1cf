package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/poll"
)

// proc is one example process under test.
type proc struct {
	id   string
	port int
	cmd  *exec.Cmd
	done chan struct{}
	code atomic.Int32
}

type procStatus struct {
	Leading bool  `json:"leading"`
	Term    int64 `json:"term"`
}

func buildExample(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "example")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func freePort(t *testing.T) int { return testserver.FreePort(t) }

func startProc(t *testing.T, bin, dir, id string, port int, extra ...string) *proc {
	t.Helper()
	return spawnProc(t, bin, dir, id, port, append([]string{
		"--backend=file", "--lock-file=" + filepath.Join(dir, "leader.json"), "--work-log=" + filepath.Join(dir, "work.log"),
		"--work-interval=20ms", "--leader-elect-lease-duration=2s", "--leader-elect-renew-deadline=1500ms",
		"--leader-elect-retry-period=1s"}, extra...)...)
}

// spawnProc starts the example as replica id, its health server on
// 127.0.0.1:port, with args after --id and --port, logging to DIR/ID.log;
// it is killed when t ends.
func spawnProc(t *testing.T, bin, dir, id string, port int, args ...string) *proc {
	t.Helper()
	logf, err := os.OpenFile(filepath.Join(dir, id+".log"), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"--id=" + id, "--port=" + strconv.Itoa(port), "--health-bind-address=127.0.0.1"}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{id: id, port: port, cmd: cmd, done: make(chan struct{})}
	p.code.Store(-100)
	go func() {
		cmd.Wait()
		logf.Close()
		p.code.Store(int32(cmd.ProcessState.ExitCode()))
		close(p.done)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			logTail(t, id, logf.Name())
		}
	})
	return p
}

// logTail logs the last lines of a replica's log, so that a failed test
// says what the process itself saw (a lost lease, an error).
func logTail(t *testing.T, id, path string) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Logf("%s's log: %v", id, err)
		return
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	t.Logf("last lines of %s's log (%s):\n%s", id, path, strings.Join(lines, "\n"))
}

// exitCode waits (bounded) for the process to exit and returns its status.
func (p *proc) exitCode(t *testing.T, after string) int32 {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s still running 30s after %s", p.id, after)
	}
	return p.code.Load()
}

var statusClient = http.Client{Timeout: time.Second}

// get returns the status code and body of p's health server at path.
func get(t *testing.T, p *proc, path string) (int, string) {
	t.Helper()
	resp, err := statusClient.Get("http://127.0.0.1:" + strconv.Itoa(p.port) + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

func (p *proc) status() (procStatus, bool) {
	resp, err := statusClient.Get("http://127.0.0.1:" + strconv.Itoa(p.port) + "/status")
	if err != nil {
		return procStatus{}, false
	}
	defer resp.Body.Close()
	var s procStatus
	return s, json.NewDecoder(resp.Body).Decode(&s) == nil
}

// monitor polls both processes' /status and reports any moment when both
// say they lead: it reads a, b, a again, and counts an overlap only if a
// led in the same term at both of its reads (a term is one unbroken
// interval) while b led in between.
type monitor struct {
	stop     chan struct{}
	done     chan struct{}
	mu       sync.Mutex
	overlaps []string
	samples  atomic.Int64
	procs    [2]atomic.Pointer[proc]
}

func (m *monitor) run() {
	defer close(m.done)
	for {
		select {
		case <-m.stop:
			return
		default:
		}
		for i := 0; i < 2; i++ {
			a, b := m.procs[i].Load(), m.procs[1-i].Load()
			s1, ok1 := a.status()
			s2, ok2 := b.status()
			s3, ok3 := a.status()
			m.samples.Add(1)
			if ok1 && ok2 && ok3 && s1.Leading && s3.Leading && s1.Term == s3.Term && s2.Leading {
				m.mu.Lock()
				m.overlaps = append(m.overlaps, fmt.Sprintf("%s term %d and %s term %d both leading", a.id, s1.Term, b.id, s2.Term))
				m.mu.Unlock()
			}
		}
		time.Sleep(time.Millisecond) // sampling interval, to leave CPU for the processes
	}
}

func TestTwoProcessesNeverBothLeadAcross100Transitions(t *testing.T) {
	if testing.Short() {
		t.Skip("about two minutes of real failovers")
	}
	bin := buildExample(t)
	dir := t.TempDir()
	ids := [2]string{"p1", "p2"}
	ports := [2]int{freePort(t), freePort(t)}
	var procs [2]*proc
	m := &monitor{stop: make(chan struct{}), done: make(chan struct{})}
	for i := range procs {
		procs[i] = startProc(t, bin, dir, ids[i], ports[i])
		m.procs[i].Store(procs[i])
	}
	go m.run()
	stopMonitor := sync.OnceFunc(func() { close(m.stop); <-m.done })
	defer stopMonitor()

	leader := func() (int, procStatus) {
		var idx int
		var st procStatus
		poll.Until(t, "a leader", 30*time.Second, func() bool {
			for i, p := range procs {
				if s, ok := p.status(); ok && s.Leading {
					idx, st = i, s
					return true
				}
			}
			return false
		})
		return idx, st
	}
	const transitions = 100
	li, st := leader()
	lastTerm := st.Term
	kills, terms := 0, 0
	workLog := filepath.Join(dir, "work.log")
	for n := 0; n < transitions; n++ {
		old := procs[li]
		// Every leader works before it is stopped, so the fencing check
		// below covers every term.
		poll.Until(t, fmt.Sprintf("term %d's first unit of work", lastTerm), 30*time.Second, func() bool {
			return loggedTerm(t, workLog) == lastTerm
		})
		sig := syscall.SIGTERM
		if n%2 == 0 {
			sig, kills = syscall.SIGKILL, kills+1
		} else {
			terms++
		}
		if err := old.cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		other := procs[1-li]
		poll.Until(t, fmt.Sprintf("transition %d: %s to take over", n+1, other.id), 30*time.Second, func() bool {
			s, ok := other.status()
			return ok && s.Leading && s.Term > lastTerm
		})
		if code := old.exitCode(t, sig.String()); sig == syscall.SIGTERM && code != 0 {
			t.Fatalf("transition %d: %s exited %d after SIGTERM, want 0", n+1, old.id, code)
		}
		s, _ := other.status()
		if s.Term != lastTerm+1 {
			t.Errorf("transition %d: term went from %d to %d, want +1", n+1, lastTerm, s.Term)
		}
		lastTerm = s.Term
		// Restart the stopped process (same identity) as a follower.
		procs[li] = startProc(t, bin, dir, old.id, old.port)
		m.procs[li].Store(procs[li])
		poll.Until(t, old.id+" to come back", 30*time.Second, func() bool { _, ok := procs[li].status(); return ok })
		li = 1 - li
	}
	poll.Until(t, fmt.Sprintf("the last term %d's first unit of work", lastTerm), 30*time.Second, func() bool {
		return loggedTerm(t, workLog) == lastTerm
	})
	stopMonitor()

	m.mu.Lock()
	overlaps := m.overlaps
	m.mu.Unlock()
	if len(overlaps) > 0 {
		t.Fatalf("two leaders at once, %d times: %s", len(overlaps), strings.Join(overlaps, "; "))
	}
	if m.samples.Load() < 100 {
		t.Fatalf("the monitor took only %d samples", m.samples.Load())
	}
	units, last := checkWorkLog(t, workLog)
	if last != lastTerm {
		t.Errorf("work log ends in term %d, last leader's term is %d", last, lastTerm)
	}
	t.Logf("%d transitions (%d SIGKILL, %d SIGTERM), %d /status samples, %d term-stamped work units, no overlap", transitions, kills, terms, m.samples.Load(), units)
}

// checkWorkLog verifies the fencing invariant on the shared work log: terms
// never go backwards, and each term belongs to one identity.
func checkWorkLog(t *testing.T, path string) (units int, last int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	owner := map[int64]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 {
			t.Fatalf("work log line %d malformed: %q", units+1, sc.Text())
		}
		term, err := strconv.ParseInt(fields[0], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		if term < last {
			t.Fatalf("fencing violation at work unit %d: term %d after term %d", units+1, term, last)
		}
		if o, ok := owner[term]; ok && o != fields[1] {
			t.Fatalf("term %d worked by both %s and %s", term, o, fields[1])
		}
		owner[term] = fields[1]
		last = term
		units++
	}
	return units, last
}

// loggedTerm returns the term of the work log's last line (0 if none).
func loggedTerm(t *testing.T, path string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	f := strings.Fields(lines[len(lines)-1])
	if len(f) == 0 {
		return 0
	}
	term, _ := strconv.ParseInt(f[0], 10, 64)
	return term
}

// SIGTERM stops the leader gracefully and releases the lock: the record is
// left with no holder, so a follower takes over at once rather than after
// the lease.
func TestSIGTERMReleasesTheLock(t *testing.T) {
	bin := buildExample(t)
	dir := t.TempDir()
	p := startProc(t, bin, dir, "solo", freePort(t))
	poll.Until(t, "solo leads", 30*time.Second, func() bool { s, ok := p.status(); return ok && s.Leading })
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exitCode(t, "SIGTERM"); code != 0 {
		t.Fatalf("exited %d after SIGTERM, want 0", code)
	}
	b, err := os.ReadFile(filepath.Join(dir, "leader.json"))
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Record struct {
			HolderIdentity string `json:"holderIdentity"`
		} `json:"record"`
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		t.Fatalf("lock file %s: %v", b, err)
	}
	if h := rec.Record.HolderIdentity; h != "" {
		t.Fatalf("after SIGTERM the lock is still held by %q, want released (empty holder)", h)
	}
}
