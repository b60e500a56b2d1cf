package main

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBadInputIsAClearErrorFromTheBinary runs the example with each kind of
// bad input and checks that it exits non-zero with a message naming the
// problem, and leaves the lock file alone.
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
	}{
		{"zero lease", []string{"--id=a", "--leader-elect-lease-duration=0s"}, nil, `--leader-elect-lease-duration`},
		{"negative renew deadline", []string{"--id=a", "--leader-elect-renew-deadline=-1s"}, nil, `--leader-elect-renew-deadline`},
		{"lease not above renew", []string{"--id=a", "--leader-elect-lease-duration=10s", "--leader-elect-renew-deadline=10s"}, nil, "LeaseDuration (10s) must be greater than RenewDeadline (10s)"},
		{"retry too close to renew", []string{"--id=a", "--leader-elect-retry-period=9s"}, nil, "RenewDeadline (10s) must be greater than RetryPeriod"},
		{"empty ID and no POD_NAME", nil, []string{"POD_NAME="}, "--id is empty and POD_NAME is not set"},
		{"port out of range", []string{"--id=a", "--port=70000"}, nil, "Option.Port 70000 is out of range"},
		{"port in use", []string{"--id=a", "--port=" + busyPort}, nil, "address already in use"},
		{"lock directory is a file", []string{"--id=a", "--lock-file=" + filepath.Join(plain, "leader.json")}, nil, plain},
		{"unknown backend", []string{"--id=a", "--backend=zookeeper"}, nil, `--backend="zookeeper"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append(append([]string{}, base...), tc.args...)
			cmd := exec.Command(bin, args...)
			cmd.Env = append(os.Environ(), tc.env...)
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
			if cmd.ProcessState.ExitCode() == 0 {
				t.Fatalf("exit status 0; stderr:\n%s", stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr does not mention %q:\n%s", tc.want, stderr.String())
			}
			if _, err := os.Stat(lockFile); err == nil {
				t.Fatalf("bad input created or touched the lock file %s", lockFile)
			}
		})
	}
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
	waitUntil(t, "the corrupt record to be reported", 30*time.Second, func() bool {
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

// TestLostLeaseExitsNonZeroWithinRenewDeadline makes the store hang under a
// leader (another process holds the file's flock): the leader must stop its
// work and RunOrDie must exit non-zero with the reason.
func TestLostLeaseExitsNonZeroWithinRenewDeadline(t *testing.T) {
	bin := buildExample(t)
	dir := t.TempDir()
	p := startProc(t, bin, dir, "a", freePort(t))
	waitUntil(t, "a to lead", 30*time.Second, func() bool { s, ok := p.status(); return ok && s.Leading })
	f, err := os.OpenFile(filepath.Join(dir, "leader.json.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
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
