package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/testserver"
)

// bin is the leaderelection binary, built once by TestMain.
var bin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "leaderelection-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "leaderelection")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := testserver.RunTests(m)
	os.RemoveAll(dir)
	os.Exit(code)
}

// Fast timings for tests: a lease of 4s, step-down 3s after the last good
// renewal began, renewals every second (the minimum). The renew deadline
// leaves room for slow store calls on a loaded machine.
var fast = []string{"--leader-elect-lease-duration=4s", "--leader-elect-renew-deadline=3s", "--leader-elect-retry-period=1s"}

// slow timings, for git over HTTP, where every call spawns git processes.
var slow = []string{"--leader-elect-lease-duration=12s", "--leader-elect-renew-deadline=8s", "--leader-elect-retry-period=2s"}

// proc is one leaderelection process under test; its output goes to
// DIR/NAME.log.
type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
	code int // valid after done
}

func start(t *testing.T, dir, name string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	logf, err := os.OpenFile(p.log, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	p.cmd.Env = append(os.Environ(), "TEST_DIR="+dir)
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		_ = p.cmd.Wait()
		logf.Close()
		p.code = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		if t.Failed() {
			b, _ := os.ReadFile(p.log)
			t.Logf("%s's output:\n%s", name, b)
		}
	})
	return p
}

func (p *proc) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("signalling %s: %v", p.name, err)
	}
}

// wait waits (bounded) for p to exit and returns its status.
func (p *proc) wait(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.code
	case <-time.After(within):
		t.Fatalf("%s still running after %v", p.name, within)
		return 0
	}
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// leCommand runs leaderelection to completion and returns its status,
// stdout and stderr.
func leCommand(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan struct{})
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("leaderelection %s: still running after 60s; stderr:\n%s", strings.Join(args, " "), stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
}

// readStatus runs "leaderelection status -o json" with args.
func readStatus(t *testing.T, args ...string) (int, lockStatus) {
	t.Helper()
	code, out, stderr := leCommand(t, append([]string{"status", "-o", "json"}, args...)...)
	var st lockStatus
	if code == exitOK || code == exitFree {
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status -o json: %v\n%s\n%s", err, out, stderr)
		}
	}
	return code, st
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	st := procState(pid)
	return st != 0 && st != 'Z'
}

// procState is pid's state letter from /proc (R, S, T, Z, ...), 0 if gone.
func procState(pid int) byte {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) STATE ...: comm may hold spaces, so find the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 || i+2 >= len(s) {
		return 0
	}
	return s[i+2]
}

func readPIDs(t *testing.T, pattern string) []int {
	t.Helper()
	files, _ := filepath.Glob(pattern)
	var pids []int
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sinkLine is one line the children append to the fencing sink: the term,
// the writer's identity and what wrote it (child or grandchild).
type sinkLine struct {
	term int64
	id   string
	what string
}

// readSink parses the fencing sink, an append-only log.
func readSink(t *testing.T, path string) []sinkLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil
		}
		t.Fatal(err)
	}
	defer f.Close()
	var lines []sinkLine
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) != 3 {
			continue // a line cut by SIGKILL
		}
		term, err := strconv.ParseInt(fs[0], 10, 64)
		if err != nil {
			continue
		}
		lines = append(lines, sinkLine{term, fs[1], fs[2]})
	}
	return lines
}

// checkSink is the fencing sink's verdict: terms never go backwards (a
// process of an older term never writes after a newer term has started,
// so no two terms' processes ran at once) and each term has one identity.
func checkSink(t *testing.T, lines []sinkLine) {
	t.Helper()
	owner := map[int64]string{}
	var last int64
	for i, l := range lines {
		if l.term < last {
			t.Fatalf("sink line %d: term %d (%s, %s) wrote after term %d had started: two terms ran at once", i+1, l.term, l.id, l.what, last)
		}
		if o, ok := owner[l.term]; ok && o != l.id {
			t.Fatalf("term %d written by both %s and %s", l.term, o, l.id)
		}
		owner[l.term] = l.id
		last = l.term
	}
}

// lastTerm is the newest term in the sink and its identity.
func lastTerm(t *testing.T, path string) (int64, string) {
	lines := readSink(t, path)
	if len(lines) == 0 {
		return 0, ""
	}
	l := lines[len(lines)-1]
	return l.term, l.id
}
