//go:build unix

package leaderelection_test

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// readmeUsage returns the Go block under "## Usage" in README.md.
func readmeUsage(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	i := strings.Index(s, "## Usage\n")
	if i < 0 {
		t.Fatal("README.md has no ## Usage section")
	}
	s = s[i:]
	start := strings.Index(s, "```go\n")
	end := strings.Index(s[start+6:], "```\n")
	if start < 0 || end < 0 {
		t.Fatal("README.md's Usage section has no Go block")
	}
	return s[start+6 : start+6+end]
}

// TestReadmeUsageBuildsAndRuns builds README.md's usage example exactly as
// it stands, runs it as a user would (no POD_NAME, the default port), and
// checks that it leads, serves /status, and exits 0 on SIGTERM.
func TestReadmeUsageBuildsAndRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a program")
	}
	// The file lives in the module (testdata is not a package), so it
	// builds against this checkout.
	if err := os.MkdirAll("testdata", 0o755); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("testdata", "readme-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir); os.Remove("testdata") })
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(readmeUsage(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "readme")
	if out, err := exec.Command("go", "build", "-o", bin, "./"+src).CombinedOutput(); err != nil {
		t.Fatalf("README usage does not build: %v\n%s", err, out)
	}

	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		t.Skipf("the README example serves on port 8080, which is in use: %v", err)
	}
	ln.Close()
	tmp := t.TempDir()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "POD_NAME=", "TMPDIR="+tmp)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		for sc := bufio.NewScanner(stderr); sc.Scan(); {
			lines <- sc.Text()
		}
	}()
	var log []string
	deadline := time.After(30 * time.Second)
	for led := false; !led; {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("exited before leading:\n%s", strings.Join(log, "\n"))
			}
			log = append(log, l)
			led = strings.Contains(l, "leading in term 1")
		case <-deadline:
			t.Fatalf("not leading after 30s:\n%s", strings.Join(log, "\n"))
		}
	}
	if _, err := os.Stat(filepath.Join(tmp, "myctl", "leader.json")); err != nil {
		t.Errorf("no record where the README says: %v", err)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	for l := range lines {
		log = append(log, l)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", err, strings.Join(log, "\n"))
	}
}
