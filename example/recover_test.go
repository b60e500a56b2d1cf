package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/internal/poll"
)

// fullStatus is p's /status.
func fullStatus(p *proc) (healthz.Status, bool) {
	resp, err := statusClient.Get("http://127.0.0.1:" + strconv.Itoa(p.port) + "/status")
	if err != nil {
		return healthz.Status{}, false
	}
	defer resp.Body.Close()
	var s healthz.Status
	return s, resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&s) == nil
}

// workLines returns the work log's complete lines.
func workLines(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "work.log"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	lines := strings.Split(string(b), "\n")
	return lines[:len(lines)-1]
}

// hangStore hangs the file backend's store in dir, as another process
// holding its flock does, until release is called (or the test ends).
func hangStore(t *testing.T, dir string) (release func()) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, "leader.json.lock"), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRecoverRidesOutAHungStoreInTheSameTerm runs the example with
// --leader-elect-recover on the file backend and hangs its store (another
// process holds the lock file's flock) for longer than the lease: the
// process does not exit, stops leading and writing at its renew deadline
// (its writes refused by the gate), and when the store answers again it
// leads in the same term, its work loop never restarted, and writes again.
func TestRecoverRidesOutAHungStoreInTheSameTerm(t *testing.T) {
	bin := buildExample(t)
	dir := t.TempDir()
	p := startProc(t, bin, dir, "a", freePort(t), "--leader-elect-recover", "--leader-elect-recover-deadline=60s")
	poll.Until(t, "a to lead and write", 30*time.Second, func() bool {
		s, ok := p.status()
		return ok && s.Leading && len(workLines(t, dir)) > 0
	})
	before, _ := p.status()

	release := hangStore(t, dir)
	poll.Until(t, "a to recover", 10*time.Second, func() bool { s, ok := fullStatus(p); return ok && s.Recovering && !s.Leading })
	written := len(workLines(t, dir))
	time.Sleep(3 * time.Second) // the store stays hung longer than the lease (2s): the fault's length
	if s, ok := fullStatus(p); !ok || !s.Recovering || s.Leading {
		t.Fatalf("3s into the outage: status %+v (reachable %v); want recovering, not leading", s, ok)
	}
	if got := len(workLines(t, dir)); got != written {
		t.Fatalf("%d units of work were written while a recovered, its gate closed", got-written)
	}
	// What an operator sees meanwhile (docs/operations.md, "A store outage
	// with Recover"): not the leader, the store failing readiness, alive.
	for _, c := range []struct {
		path string
		code int
		has  string // a regular expression the body matches
	}{
		{"/leader", http.StatusServiceUnavailable, `"leading":\s*false`},
		{"/readyz/store", http.StatusInternalServerError, ""},
		{"/livez", http.StatusOK, ""},
		{"/metrics", http.StatusOK, `(?m)^leader_election_master_status\{[^}]*\} 0$`},
	} {
		code, body := get(t, p, c.path)
		if code != c.code || !regexp.MustCompile(c.has).MatchString(body) {
			t.Errorf("%s while a recovers: %d %q; want %d with %q", c.path, code, body, c.code, c.has)
		}
	}
	release()
	poll.Until(t, "a to lead again", 15*time.Second, func() bool { s, ok := p.status(); return ok && s.Leading })
	poll.Until(t, "a to write again", 10*time.Second, func() bool { return len(workLines(t, dir)) > written })
	if after, _ := p.status(); after.Term != before.Term {
		t.Fatalf("a leads term %d after the outage, was %d: want the same term", after.Term, before.Term)
	}
	for _, line := range workLines(t, dir) {
		if !strings.HasPrefix(line, strconv.FormatInt(before.Term, 10)+" a ") {
			t.Fatalf("work log line %q, want every unit in term %d", line, before.Term)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "a.log"))
	log := string(b)
	if n := strings.Count(log, "Started leading"); n != 1 {
		t.Errorf("the work loop started %d times, want once:\n%s", n, log)
	}
	for _, want := range []string{"writes refused by the gate", "Renewed again in the same term"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
}
