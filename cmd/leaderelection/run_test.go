package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

// termPIDs are the pids a term's job recorded: the child, its grandchild
// in the group, and the grandchild that left the group.
func termPIDs(t *testing.T, dir string, term int64) []int {
	t.Helper()
	var pids []int
	poll.Until(t, fmt.Sprintf("term %d's job to record its pids", term), 30*time.Second, func() bool {
		pids = pids[:0]
		for _, who := range []string{"child", "grandchild", "escaped"} {
			pids = append(pids, readPIDs(t, filepath.Join(dir, fmt.Sprintf("%s.%d.pid", who, term)))...)
		}
		return len(pids) == 3
	})
	return pids
}

func anyAlive(pids []int) bool {
	for _, p := range pids {
		if alive(p) {
			return true
		}
	}
	return false
}

// TestRunThreeCopiesOneJobAtATime runs three copies of "leaderelection run"
// on the file backend over a shell job with grandchildren. The fencing sink
// shows exactly one term's processes at a time; SIGTERM to the leader hands
// over within the lease (it releases, nobody waits for expiry); SIGKILL to
// the leader kills its job's whole process group, and the grandchild that
// left the group, before another copy's job starts.
func TestRunThreeCopiesOneJobAtATime(t *testing.T) {
	dir := t.TempDir()
	job := writeScript(t, dir, "job.sh", jobScript)
	sink := filepath.Join(dir, "sink")
	lockFile := filepath.Join(dir, "leader.json")
	procs := map[string]*proc{}
	for _, id := range []string{"a", "b", "c"} {
		procs[id] = start(t, dir, id, append(append([]string{"run", "--id=" + id, "--lock-file=" + lockFile, "--leader-elect-stop-timeout=1s"}, fast...), "--", job)...)
	}
	poll.Until(t, "term 1's job to write", 30*time.Second, func() bool { term, _ := lastTerm(t, sink); return term == 1 })
	_, first := lastTerm(t, sink)
	// The job writes the sink before it has recorded every pid (the
	// grandchild writes first): wait for them before stopping it.
	pids1 := termPIDs(t, dir, 1)

	// SIGTERM: the job stops, the lock is released, another copy starts.
	stopped := time.Now()
	procs[first].signal(t, syscall.SIGTERM)
	poll.Until(t, "term 2's job to write", 30*time.Second, func() bool { term, _ := lastTerm(t, sink); return term == 2 })
	handOver := time.Since(stopped)
	if code := procs[first].wait(t, 30*time.Second); code != 0 {
		t.Fatalf("%s exited %d after SIGTERM; its job exited 0", first, code)
	}
	// Handed over by a release, not by the lease running out (which a
	// stopwatch cannot tell apart on a loaded machine).
	if out, _ := os.ReadFile(procs[first].log); !strings.Contains(string(out), "Released the lock") {
		t.Fatalf("%s did not release the lock on SIGTERM:\n%s", first, out)
	}
	if anyAlive(pids1) {
		t.Fatalf("term 1's processes %v still alive after its copy exited", pids1)
	}
	t.Logf("SIGTERM hand-over: %v from the signal to the next copy's job writing", handOver.Round(time.Millisecond))

	// SIGKILL: the supervisor kills the group (and the escaped grandchild)
	// on its own, long before the lease lets another copy in.
	_, second := lastTerm(t, sink)
	pids := termPIDs(t, dir, 2)
	killed := time.Now()
	procs[second].signal(t, syscall.SIGKILL)
	var groupGone time.Duration
	poll.Until(t, "term 3's job to write", 30*time.Second, func() bool {
		if groupGone == 0 && !anyAlive(pids) {
			groupGone = time.Since(killed)
		}
		term, _ := lastTerm(t, sink)
		if term == 3 && anyAlive(pids) {
			t.Fatalf("term 3 started while term 2's processes %v lived", pids)
		}
		return term == 3
	})
	takeOver := time.Since(killed)
	if groupGone == 0 {
		t.Fatalf("term 2's processes %v alive when term 3 started", pids)
	}
	t.Logf("SIGKILL of the leader: its job's processes gone after %v, next job after %v (lease 4s)", groupGone.Round(time.Millisecond), takeOver.Round(time.Millisecond))

	_, third := lastTerm(t, sink)
	procs[third].signal(t, syscall.SIGTERM)
	if code := procs[third].wait(t, 30*time.Second); code != 0 {
		t.Fatalf("%s exited %d after SIGTERM", third, code)
	}
	lines := readSink(t, sink)
	checkSink(t, lines)
	if len(lines) < 3 {
		t.Fatalf("sink holds %d lines", len(lines))
	}
}

// TestRunKillsAJobThatIgnoresSIGTERMAfterTheStopTimeout: a job that traps
// SIGTERM is SIGKILLed once --leader-elect-stop-timeout has passed, and
// leaderelection exits with its status (128+9).
func TestRunKillsAJobThatIgnoresSIGTERMAfterTheStopTimeout(t *testing.T) {
	dir := t.TempDir()
	job := writeScript(t, dir, "stubborn.sh", `#!/bin/sh
trap '' TERM
echo $$ > "$TEST_DIR/stubborn.pid"
while :; do sleep 0.05; done
`)
	const stop = 1500 * time.Millisecond
	p := start(t, dir, "a", append(append([]string{"run", "--id=a", "--lock-file=" + filepath.Join(dir, "leader.json"), "--leader-elect-stop-timeout=" + stop.String()}, fast...), "--", job)...)
	var pid int
	poll.Until(t, "the job to start", 30*time.Second, func() bool {
		pids := readPIDs(t, filepath.Join(dir, "stubborn.pid"))
		if len(pids) == 1 {
			pid = pids[0]
		}
		return pid != 0
	})
	signalled := time.Now()
	p.signal(t, syscall.SIGTERM)
	code := p.wait(t, 30*time.Second)
	took := time.Since(signalled)
	if code != 128+int(syscall.SIGKILL) {
		t.Fatalf("exit status %d, want %d (the job's, SIGKILLed)", code, 128+int(syscall.SIGKILL))
	}
	if took < stop {
		t.Fatalf("the job was killed %v after SIGTERM, before the %v stop timeout", took, stop)
	}
	if alive(pid) {
		t.Fatalf("the job %d is still alive", pid)
	}
}

// TestRunPassesTheJobsStatusAndEnvironment: the job sees its term,
// identity and lock in its environment; when it exits by itself the lock is
// released and leaderelection exits with the job's status; the next run's
// term is the next one.
func TestRunPassesTheJobsStatusAndEnvironment(t *testing.T) {
	dir := t.TempDir()
	lockFile := filepath.Join(dir, "leader.json")
	for term := 1; term <= 2; term++ {
		p := start(t, dir, "a", append(append([]string{"run", "--id=a", "--lock-file=" + lockFile, "--shell"}, fast...),
			"--", `echo "$LEADER_ELECTION_TERM $LEADER_ELECTION_IDENTITY $LEADER_ELECTION_LOCK" > "$TEST_DIR/env"; exit 7`)...)
		if code := p.wait(t, 60*time.Second); code != 7 {
			t.Fatalf("exit status %d, want the job's 7", code)
		}
		b, _ := os.ReadFile(filepath.Join(dir, "env"))
		if got, want := strings.TrimSpace(string(b)), fmt.Sprintf("%d a file://%s", term, lockFile); got != want {
			t.Fatalf("the job's environment: %q, want %q", got, want)
		}
		code, st := readStatus(t, "--lock-file="+lockFile)
		if code != exitFree || st.Holder != "" || st.Term != int64(term) {
			t.Fatalf("after the job exited: status %d %+v, want %d, released, term %d", code, st, exitFree, term)
		}
	}
}

// TestRunRecampaignsAfterTheJobExits: with --recampaign, a job that exits
// is started again under a new term.
func TestRunRecampaignsAfterTheJobExits(t *testing.T) {
	dir := t.TempDir()
	terms := filepath.Join(dir, "terms")
	p := start(t, dir, "a", append(append([]string{"run", "--id=a", "--lock-file=" + filepath.Join(dir, "leader.json"), "--recampaign", "--shell"}, fast...),
		"--", `echo $LEADER_ELECTION_TERM >> "$TEST_DIR/terms"; exit 3`)...)
	poll.Until(t, "three terms", 60*time.Second, func() bool {
		b, _ := os.ReadFile(terms)
		return len(strings.Fields(string(b))) >= 3
	})
	p.signal(t, syscall.SIGTERM)
	p.wait(t, 30*time.Second)
	b, _ := os.ReadFile(terms)
	for i, f := range strings.Fields(string(b)) {
		if n, _ := strconv.Atoi(f); n != i+1 {
			t.Fatalf("terms %q, want 1, 2, 3, ...", b)
		}
	}
}

// TestRunStoreLossStopsTheJobBeforeAnotherCopyAcquires puts the leading
// copy's git remote behind a proxy and stalls it: that copy cannot renew,
// steps down RenewDeadline after its last good renewal began and signals
// its job; the other copy, which reaches the store, acquires only after the
// lease, so the job's "stopped" line comes before the next term's first.
func TestRunStoreLossStopsTheJobBeforeAnotherCopyAcquires(t *testing.T) {
	repo := testserver.NewGitRepo(t)
	addr := repo.ServeHTTP(t, testserver.GitHTTPAuth{})
	proxy := testserver.StartProxy(t, addr)
	dir := t.TempDir()
	job := writeScript(t, dir, "job.sh", jobScript)
	sink := filepath.Join(dir, "sink")
	args := func(id, host string) []string {
		return append(append([]string{"run", "--id=" + id, "--backend=git", "--git-url=http://" + host + "/" + repo.Name, "--leader-elect-stop-timeout=1s"}, slow...), "--", job)
	}
	a := start(t, dir, "a", args("a", proxy.Addr())...)
	poll.Until(t, "a's job to write", 60*time.Second, func() bool { term, id := lastTerm(t, sink); return term == 1 && id == "a" })
	start(t, dir, "b", args("b", addr)...)
	poll.Until(t, "b to campaign", 60*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "b.log"))
		return strings.Contains(string(b), "Campaigning")
	})
	stalled := time.Now()
	resume := proxy.Stall()
	defer resume()
	poll.Until(t, "b's job to write", 60*time.Second, func() bool { term, _ := lastTerm(t, sink); return term == 2 })
	if code := a.wait(t, 30*time.Second); code != exitError {
		t.Fatalf("a exited %d after losing its store, want %d", code, exitError)
	}
	lines := readSink(t, sink)
	checkSink(t, lines)
	stoppedAt := -1
	for i, l := range lines {
		if l.term == 1 && l.what == "stopped" {
			stoppedAt = i
		}
		if l.term == 2 && stoppedAt < 0 {
			t.Fatalf("term 2 wrote (line %d) before term 1's job was signalled", i+1)
		}
	}
	if stoppedAt < 0 {
		t.Fatal("term 1's job never got SIGTERM")
	}
	t.Logf("store stalled; term 2 began %v later, after term 1's job had stopped", time.Since(stalled).Round(time.Millisecond))
}

// TestRunStopsTheJobWhenLeaderelectionIsPaused freezes the leading
// leaderelection with SIGSTOP: it can neither renew nor step down, but its
// supervisor holds the renew deadline and stops the job on its own, before
// the other copy acquires after the lease.
func TestRunStopsTheJobWhenLeaderelectionIsPaused(t *testing.T) {
	dir := t.TempDir()
	job := writeScript(t, dir, "job.sh", jobScript)
	sink := filepath.Join(dir, "sink")
	lockFile := filepath.Join(dir, "leader.json")
	args := func(id string) []string {
		return append(append([]string{"run", "--id=" + id, "--lock-file=" + lockFile, "--leader-elect-stop-timeout=1s"}, fast...), "--", job)
	}
	a := start(t, dir, "a", args("a")...)
	poll.Until(t, "a's job to write", 30*time.Second, func() bool { term, id := lastTerm(t, sink); return term == 1 && id == "a" })
	start(t, dir, "b", args("b")...)
	poll.Until(t, "b to campaign", 30*time.Second, func() bool {
		b, _ := os.ReadFile(filepath.Join(dir, "b.log"))
		return strings.Contains(string(b), "Campaigning")
	})
	pids := termPIDs(t, dir, 1)
	defer a.cmd.Process.Signal(syscall.SIGCONT)
	pauseOutsideFlock(t, a, lockFile+".lock")
	poll.Until(t, "b's job to write", 30*time.Second, func() bool {
		term, _ := lastTerm(t, sink)
		if term == 2 && anyAlive(pids) {
			t.Fatalf("term 2 started while the paused leader's job %v lived", pids)
		}
		return term == 2
	})
	if b, _ := os.ReadFile(a.log); !strings.Contains(string(b), "no renewal within the renew deadline") {
		t.Errorf("a's supervisor did not say it stopped the job on its own:\n%s", b)
	}
	lines := readSink(t, sink)
	checkSink(t, lines)
	for i, l := range lines {
		if l.term == 1 && l.what == "stopped" {
			break
		}
		if l.term == 2 {
			t.Fatalf("term 2 wrote (line %d) before the paused leader's job was signalled", i+1)
		}
	}
}

// pauseOutsideFlock stops p with SIGSTOP at a moment it does not hold the
// file backend's flock: a process frozen inside a write would keep every
// candidate out (the file backend's own failure mode, not run's).
func pauseOutsideFlock(t *testing.T, p *proc, flockFile string) {
	t.Helper()
	f, err := os.Open(flockFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for attempt := 0; ; attempt++ {
		p.signal(t, syscall.SIGSTOP)
		poll.Until(t, p.name+" to stop", 10*time.Second, func() bool { return procState(p.cmd.Process.Pid) == 'T' })
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
			return
		}
		if attempt == 100 {
			t.Fatalf("%s always held the flock when stopped", p.name)
		}
		p.signal(t, syscall.SIGCONT)
	}
}

// TestRunRecampaignsAfterLosingTheLease: with --recampaign, a copy whose
// store hung (another process holds the file's flock) stops its job at the
// step-down, stays up, and runs the job again in the next term once the
// store answers.
func TestRunRecampaignsAfterLosingTheLease(t *testing.T) {
	dir := t.TempDir()
	job := writeScript(t, dir, "job.sh", jobScript)
	sink := filepath.Join(dir, "sink")
	lockFile := filepath.Join(dir, "leader.json")
	a := start(t, dir, "a", append(append([]string{"run", "--id=a", "--lock-file=" + lockFile, "--recampaign", "--leader-elect-stop-timeout=1s"}, fast...), "--", job)...)
	poll.Until(t, "term 1's job to write", 30*time.Second, func() bool { term, _ := lastTerm(t, sink); return term == 1 })
	f, err := os.Open(lockFile + ".lock")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	poll.Until(t, "term 1's job to be stopped", 30*time.Second, func() bool {
		for _, l := range readSink(t, sink) {
			if l.term == 1 && l.what == "stopped" {
				return true
			}
		}
		return false
	})
	_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	poll.Until(t, "term 2's job to write", 30*time.Second, func() bool { term, id := lastTerm(t, sink); return term == 2 && id == "a" })
	if a.exited() {
		t.Fatalf("a exited %d; with --recampaign it stays a candidate", a.code)
	}
	checkSink(t, readSink(t, sink))
}

// TestRunLogsTheJobsPID: "Started the command" names the job's own pid
// (the one ps shows for it, and that an operator would signal), not the
// supervisor's.
func TestRunLogsTheJobsPID(t *testing.T) {
	dir := t.TempDir()
	p := start(t, dir, "a", append(append([]string{"run", "--id=a", "--lock-file=" + filepath.Join(dir, "leader.json"), "--shell"}, fast...),
		"--", `echo $$ > "$TEST_DIR/job.pid"`)...)
	if code := p.wait(t, 60*time.Second); code != 0 {
		t.Fatalf("exit status %d, want 0", code)
	}
	pids := readPIDs(t, filepath.Join(dir, "job.pid"))
	if len(pids) != 1 {
		t.Fatalf("the job recorded pids %v", pids)
	}
	b, err := os.ReadFile(p.log)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf(" pid=%d ", pids[0])
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `"Started the command"`) {
			if !strings.Contains(line, want) {
				t.Fatalf("the log names another pid than the job's %d:\n%s", pids[0], line)
			}
			return
		}
	}
	t.Fatalf("no \"Started the command\" line:\n%s", b)
}

// TestRunLogsJSONWithLoggingFormatJSON: with --logging-format=json every
// line leaderelection writes to stderr is a JSON object (the elector's
// and run's own lines alike); the job's output is its own.
func TestRunLogsJSONWithLoggingFormatJSON(t *testing.T) {
	dir := t.TempDir()
	code, stdout, stderr := leCommand(t, append(append([]string{"run", "--id=a", "--lock-file=" + filepath.Join(dir, "leader.json"), "--logging-format=json"}, fast...), "--", "echo", "job-output")...)
	if code != 0 {
		t.Fatalf("exit status %d; stderr:\n%s", code, stderr)
	}
	if strings.TrimSpace(stdout) != "job-output" {
		t.Fatalf("stdout %q, want the job's own output", stdout)
	}
	msgs := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("a stderr line is not JSON (%v): %s\nall:\n%s", err, line, stderr)
		}
		msg, _ := m["msg"].(string)
		msgs[msg] = true
	}
	for _, want := range []string{"Acquired the lock", "Started the command", "Released the lock"} {
		if !msgs[want] {
			t.Errorf("no JSON line with msg %q in:\n%s", want, stderr)
		}
	}
}
