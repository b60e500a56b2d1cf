//go:build unix

package leaderelection_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/internal/testserver"
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
// it stands and runs it as the README says, as a user would (no POD_NAME):
// twice on one host, each copy with its own --health-port. One leads in
// term 1 and the other waits (its /status names the leader); SIGINT to the
// first hands over to the second in term 2; both exit 0.
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

	tmp := t.TempDir() // both copies' TMPDIR: they share $TMPDIR/myctl/leader.json
	first := startCopy(t, bin, tmp)
	first.waitLog(t, "leading in term 1")
	if _, err := os.Stat(filepath.Join(tmp, "myctl", "leader.json")); err != nil {
		t.Errorf("no record where the README says: %v", err)
	}
	second := startCopy(t, bin, tmp)
	// The second copy is up and follows: its /status names the first as
	// the leader, and it does not lead.
	deadline := time.Now().Add(30 * time.Second)
	for {
		st, err := second.status()
		if err == nil && st.Leader != "" && st.Leader == first.identity(t) && !st.Leading {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the second copy's /status = %+v, %v; want following the first (%s)\n%s", st, err, first.identity(t), second.logs())
		}
		time.Sleep(50 * time.Millisecond) // polling an HTTP endpoint
	}
	if second.saw("leading in term") {
		t.Fatalf("the second copy led while the first did:\n%s", second.logs())
	}
	if err := first.cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err := first.wait(); err != nil {
		t.Fatalf("first copy's exit after SIGINT: %v\n%s", err, first.logs())
	}
	second.waitLog(t, "leading in term 2")
	if err := second.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := second.wait(); err != nil {
		t.Fatalf("second copy's exit after SIGTERM: %v\n%s", err, second.logs())
	}
}

// readmeCopy is one running copy of the README's program.
type readmeCopy struct {
	cmd  *exec.Cmd
	port int
	done chan struct{} // closed when its stderr ends

	mu    sync.Mutex
	lines []string
	grew  chan struct{} // closed and replaced when a line arrives
}

func startCopy(t *testing.T, bin, tmp string) *readmeCopy {
	t.Helper()
	c := &readmeCopy{port: testserver.FreePort(t), done: make(chan struct{}), grew: make(chan struct{})}
	c.cmd = exec.Command(bin, "--health-port="+strconv.Itoa(c.port))
	c.cmd.Env = append(os.Environ(), "POD_NAME=", "TMPDIR="+tmp)
	stderr, err := c.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.cmd.Process.Kill(); c.wait() })
	go func() {
		defer close(c.done)
		for sc := bufio.NewScanner(stderr); sc.Scan(); {
			c.mu.Lock()
			c.lines = append(c.lines, sc.Text())
			close(c.grew)
			c.grew = make(chan struct{})
			c.mu.Unlock()
		}
	}()
	return c
}

// wait waits for the process after its output has been read.
func (c *readmeCopy) wait() error {
	<-c.done
	return c.cmd.Wait()
}

func (c *readmeCopy) logs() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.lines, "\n")
}

func (c *readmeCopy) saw(s string) bool { return strings.Contains(c.logs(), s) }

// waitLog waits until the copy has logged s.
func (c *readmeCopy) waitLog(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		c.mu.Lock()
		grew, found := c.grew, strings.Contains(strings.Join(c.lines, "\n"), s)
		c.mu.Unlock()
		if found {
			return
		}
		select {
		case <-grew:
		case <-c.done:
			if !c.saw(s) {
				t.Fatalf("exited before logging %q:\n%s", s, c.logs())
			}
		case <-deadline:
			t.Fatalf("no %q after 30s:\n%s", s, c.logs())
		}
	}
}

// identity is the copy's default identity, <hostname>_<pid>.
func (c *readmeCopy) identity(t *testing.T) string {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	return host + "_" + strconv.Itoa(c.cmd.Process.Pid)
}

func (c *readmeCopy) status() (healthz.Status, error) {
	var st healthz.Status
	resp, err := http.Get("http://127.0.0.1:" + strconv.Itoa(c.port) + "/status")
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("/status: %s", resp.Status)
	}
	return st, json.NewDecoder(resp.Body).Decode(&st)
}
