package main

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/poll"
)

// TestBadInputIsAClearErrorFromTheBinary runs the example with each kind of
// bad input and checks that it exits with status 2 (1 for a port in use, a
// failure at run time), prints the message naming the flag once, and
// leaves the lock file alone.
func TestBadInputIsAClearErrorFromTheBinary(t *testing.T) {
	bin := buildExample(t)
	dir := t.TempDir()
	lockFile := filepath.Join(dir, "leader.json")
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busyPort := strconv.Itoa(busy.Addr().(*net.TCPAddr).Port)
	base := []string{"--lock-file=" + lockFile, "--health-bind-address=127.0.0.1", "--port=" + strconv.Itoa(freePort(t))}
	cases := []struct {
		name string
		args []string
		env  []string
		want string
		code int
	}{
		{"zero lease", []string{"--id=a", "--leader-elect-lease-duration=0s"}, nil, `"--leader-elect-lease-duration" flag: must be positive`, exitBadInput},
		{"negative renew deadline", []string{"--id=a", "--leader-elect-renew-deadline=-1s"}, nil, `"--leader-elect-renew-deadline" flag: must be positive`, exitBadInput},
		{"lease below the default renew deadline", []string{"--id=a", "--leader-elect-lease-duration=5s"}, nil,
			"LeaseDuration (5s, --leader-elect-lease-duration) must be greater than RenewDeadline (10s, --leader-elect-renew-deadline): lower the renew deadline below 5s", exitBadInput},
		{"retry too close to renew", []string{"--id=a", "--leader-elect-retry-period=9s"}, nil,
			"RenewDeadline (10s, --leader-elect-renew-deadline) must be greater than RetryPeriod×1.2 (10.8s, --leader-elect-retry-period ×1.2): lower the retry period below 8.333s", exitBadInput},
		{"retry below 1s", []string{"--id=a", "--leader-elect-retry-period=500ms"}, nil, "RetryPeriod (500ms, --leader-elect-retry-period) must be at least 1s", exitBadInput},
		{"recover deadline below the renew deadline", []string{"--id=a", "--leader-elect-recover", "--leader-elect-recover-deadline=5s"}, nil,
			"RecoverDeadline (5s, --leader-elect-recover-deadline) must be greater than RenewDeadline (10s, --leader-elect-renew-deadline)", exitBadInput},
		{"unknown flag", []string{"--id=a", "--leader-elect-lease=5s"}, nil, "unknown flag: --leader-elect-lease", exitBadInput},
		{"port out of range", []string{"--id=a", "--port=70000"}, nil, "Option.Port 70000 is out of range", exitBadInput},
		{"lock directory is a file", []string{"--id=a", "--lock-file=" + filepath.Join(plain, "leader.json")}, nil, plain, exitBadInput},
		{"unknown backend", []string{"--id=a", "--backend=zookeeper"}, nil, `--backend="zookeeper"`, exitBadInput},
		// Only the fault campaign's build (-tags lefaultinject) has it.
		{"gossip fault hook absent from the default build", []string{"--id=a", "--gossip-fault-file=" + plain}, nil, "unknown flag: --gossip-fault-file", exitBadInput},
		{"port in use", []string{"--id=a", "--port=" + busyPort}, nil, "address already in use", 1},
		{"negative shard count", []string{"--id=a", "--shards=-1"}, nil, "--shards=-1: want at least 1, or 0 for one leader", exitBadInput},
		{"shards on gossip", []string{"--id=a", "--shards=4", "--backend=gossip"}, nil, "--shards=4: --backend=gossip keeps one record per election", exitBadInput},
		{"shards with a work log", []string{"--id=a", "--shards=4", "--work-log=" + filepath.Join(dir, "work.log")}, nil, "--work-log: not with --shards=4", exitBadInput},
		{"shards with a lease below the renew deadline", []string{"--id=a", "--shards=4", "--leader-elect-lease-duration=5s"}, nil,
			"LeaseDuration (5s, --leader-elect-lease-duration) must be greater than RenewDeadline (10s, --leader-elect-renew-deadline)", exitBadInput},
		{"shards with the port in use", []string{"--id=a", "--shards=4", "--port=" + busyPort}, nil, "address already in use", 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, base...), tc.args...)
			code, stderr := runExample(t, bin, tc.env, args...)
			if code != tc.code {
				t.Fatalf("exit status %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if n := strings.Count(stderr, tc.want); n != 1 {
				t.Fatalf("stderr mentions %q %d times, want once:\n%s", tc.want, n, stderr)
			}
			if strings.Contains(stderr, "Usage") {
				t.Errorf("bad input printed the whole usage:\n%s", stderr)
			}
			if _, err := os.Stat(lockFile); err == nil {
				t.Fatalf("bad input created or touched the lock file %s", lockFile)
			}
		})
	}
}

// runExample runs the example to completion (bounded) and returns its exit
// status and stderr.
func runExample(t *testing.T, bin string, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("still running after 30s; stderr:\n%s", stderr.String())
	}
	return cmd.ProcessState.ExitCode(), stderr.String()
}

// TestHelpExitsZero: --help (and -h) print the flags and exit 0, without
// pflag's "help requested" error.
func TestHelpExitsZero(t *testing.T) {
	bin := buildExample(t)
	for _, arg := range []string{"--help", "-h"} {
		code, stderr := runExample(t, bin, nil, arg)
		if code != 0 || strings.Contains(stderr, "help requested") || !strings.Contains(stderr, "--leader-elect-lease-duration") {
			t.Errorf("%s: exit status %d, stderr:\n%s", arg, code, stderr)
		}
	}
}

// TestVersionExitsZero: --version prints the build on stdout and exits 0
// without starting a replica.
func TestVersionExitsZero(t *testing.T) {
	bin := buildExample(t)
	out, err := exec.Command(bin, "--version").Output()
	if err != nil || !strings.HasPrefix(string(out), "example ") {
		t.Fatalf("--version: %v, stdout %q; want exit 0 and the version", err, out)
	}
}

// TestIdentityDefaultsToHostAndPid: without --id and POD_NAME a replica
// runs, as <hostname>_<pid>, so replicas on one host differ.
func TestIdentityDefaultsToHostAndPid(t *testing.T) {
	t.Setenv("POD_NAME", "")
	bin := buildExample(t)
	dir := t.TempDir()
	p := startProc(t, bin, dir, "a", freePort(t), "--id=")
	host, err := os.Hostname()
	if err != nil {
		t.Skip(err)
	}
	want := host + "_" + strconv.Itoa(p.cmd.Process.Pid)
	poll.Until(t, "the replica to lead as "+want, 30*time.Second, func() bool {
		resp, err := statusClient.Get("http://127.0.0.1:" + strconv.Itoa(p.port) + "/status")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var s struct {
			Identity string `json:"identity"`
			Leading  bool   `json:"leading"`
		}
		return json.NewDecoder(resp.Body).Decode(&s) == nil && s.Leading && s.Identity == want
	})
}

// TestCorruptLockFileIsReportedAndKept starts a replica on a corrupt lock
// file: it must say which file is corrupt, never lead, never overwrite it.
func TestCorruptLockFileIsReportedAndKept(t *testing.T) {
	bin := buildExample(t)
	dir := t.TempDir()
	lockFile := filepath.Join(dir, "leader.json")
	garbage := []byte("{\"version\": 3, \"record\": {\"holderIdent")
	if err := os.WriteFile(lockFile, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, bin, dir, "a", freePort(t), "--lock-file="+lockFile)
	logPath := filepath.Join(dir, "a.log")
	poll.Until(t, "the corrupt record to be reported", 30*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		return strings.Contains(string(b), "corrupt record") && strings.Contains(string(b), lockFile)
	})
	if s, ok := p.status(); !ok || s.Leading {
		t.Fatalf("status %+v (reachable %v): a replica leads over a corrupt record", s, ok)
	}
	if b, _ := os.ReadFile(lockFile); !bytes.Equal(b, garbage) {
		t.Fatalf("corrupt lock file overwritten with %q", b)
	}
}

// TestLeaderFindingItsLockFileCorruptSaysWhyAndKeepsIt corrupts the lock
// file under a working leader, as a bad manual edit or a broken disk
// would: the leader must step down within its RenewDeadline, exit
// non-zero, say that the record is corrupt and which file to delete, and
// leave the file as it found it.
func TestLeaderFindingItsLockFileCorruptSaysWhyAndKeepsIt(t *testing.T) {
	bin := buildExample(t)
	dir := t.TempDir()
	lockFile := filepath.Join(dir, "leader.json")
	p := startProc(t, bin, dir, "a", freePort(t), "--lock-file="+lockFile)
	poll.Until(t, "a to lead", 30*time.Second, func() bool { s, ok := p.status(); return ok && s.Leading })
	garbage := []byte("{\"version\": 3, \"record\": {\"holderIdent")
	if err := os.WriteFile(lockFile, garbage, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := p.exitCode(t, "its lock file was corrupted"); code != 1 {
		t.Fatalf("exit status %d after the record turned corrupt under the leader, want 1", code)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "a.log"))
	var stepDown string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "Stepped down") {
			stepDown = line
		}
	}
	for _, want := range []string{`reason="corrupt record"`, `delete="file://` + lockFile + `"`} {
		if !strings.Contains(stepDown, want) {
			t.Errorf("the step-down line lacks %s: %q\nlog:\n%s", want, stepDown, b)
		}
	}
	// The exit, the last line an operator reads, says it too.
	if want := "lease lost: the record is corrupt; delete file://" + lockFile; !strings.Contains(string(b), want) {
		t.Errorf("the log lacks %q:\n%s", want, b)
	}
	if b, _ := os.ReadFile(lockFile); !bytes.Equal(b, garbage) {
		t.Fatalf("corrupt lock file overwritten with %q", b)
	}
}

// TestLostLeaseExitsNonZeroWithinRenewDeadline makes the store hang under a
// leader (another process holds the file's flock): the leader must stop its
// work and RunOrDie must exit non-zero with the reason.
func TestLostLeaseExitsNonZeroWithinRenewDeadline(t *testing.T) {
	bin := buildExample(t)
	dir := t.TempDir()
	p := startProc(t, bin, dir, "a", freePort(t))
	poll.Until(t, "a to lead", 30*time.Second, func() bool { s, ok := p.status(); return ok && s.Leading })
	hangStore(t, dir)
	if code := p.exitCode(t, "its store hung"); code != 1 {
		t.Fatalf("exit status %d after losing the lease, want 1", code)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "a.log"))
	log := string(b)
	for _, want := range []string{"lease lost", "Stopped leading"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}

// TestLoggingFormatJSON: with --logging-format=json every line the
// example logs is one JSON object, the library's lines and its own alike.
func TestLoggingFormatJSON(t *testing.T) {
	bin := buildExample(t)
	dir := t.TempDir()
	p := startProc(t, bin, dir, "a", freePort(t), "--logging-format=json")
	poll.Until(t, "a to lead", 30*time.Second, func() bool { s, ok := p.status(); return ok && s.Leading })
	logPath := filepath.Join(dir, "a.log")
	msgs := map[string]bool{}
	poll.Until(t, "the example's own line and the library's", 30*time.Second, func() bool {
		b, _ := os.ReadFile(logPath)
		lines := strings.Split(string(b), "\n")
		for _, line := range lines[:len(lines)-1] { // the last may be half written
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err != nil {
				t.Fatalf("a log line is not JSON (%v): %s", err, line)
			}
			msg, _ := m["msg"].(string)
			msgs[msg] = true
		}
		return msgs["Acquired the lock"] && msgs["Started leading"]
	})
}
