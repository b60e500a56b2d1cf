package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/poll"
)

// runs reads the lines the job appended to $TEST_DIR/runs, one per run.
func runs(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "runs"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// onceCopy starts a copy of "leaderelection run --once-per" with identity
// id on lockFile, as cron would, over the shell job.
func onceCopy(t *testing.T, dir, id, lockFile string, period time.Duration, job string) *proc {
	t.Helper()
	return onceCopyOn(t, dir, id, []string{"--lock-file=" + lockFile}, fast, period, job)
}

// onceCopyOn is onceCopy on the lock storeArgs name, with the given
// timing flags.
func onceCopyOn(t *testing.T, dir, id string, storeArgs, timing []string, period time.Duration, job string) *proc {
	t.Helper()
	args := append([]string{"run", "--id=" + id, "--once-per=" + period.String(), "--wait=50s", "--shell"}, timing...)
	args = append(args, storeArgs...)
	return start(t, dir, id, append(args, "--", job)...)
}

func logOf(p *proc) string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// TestRunOncePerThreeCopiesFromCronRunTheJobOnce: three copies started
// for one cron firing, a few hundred milliseconds apart, run the job once:
// the copy that gets the lock first runs it and records the run before it
// releases; the others acquire after, read the record, and exit 0 saying
// who ran it in which term.
func TestRunOncePerThreeCopiesFromCronRunTheJobOnce(t *testing.T) {
	dir := t.TempDir()
	lockFile := filepath.Join(dir, "leader.json")
	// The job outlasts the stagger, so later copies wait on a held lock.
	const job = `echo "$LEADER_ELECTION_IDENTITY" >> "$TEST_DIR/runs"; sleep 1`
	var procs []*proc
	for i, id := range []string{"a", "b", "c"} {
		if i > 0 {
			time.Sleep(300 * time.Millisecond) // cron's jitter between machines, not a wait for anything
		}
		procs = append(procs, onceCopy(t, dir, id, lockFile, time.Hour, job))
	}
	for _, p := range procs {
		if code := p.wait(t, 60*time.Second); code != exitOK {
			t.Fatalf("%s exited %d, want 0", p.name, code)
		}
	}
	got := runs(t, dir)
	if len(got) != 1 {
		t.Fatalf("the job ran %d times (by %v), want once", len(got), got)
	}
	ran := got[0]
	for _, p := range procs {
		if p.name == ran {
			if !strings.Contains(logOf(p), "Recorded the run") {
				t.Fatalf("%s ran the job but did not record the run:\n%s", ran, logOf(p))
			}
			continue
		}
		if want := "already ran this period: term 1 finished at "; !strings.Contains(logOf(p), want) || !strings.Contains(logOf(p), " by "+ran+`"`) {
			t.Fatalf("%s does not say %q ... by %s:\n%s", p.name, want, ran, logOf(p))
		}
	}
	// The record, read as any lock: who ran it, in which term.
	if code, st := readStatus(t, "--lock-file="+lockFile+".last-run"); !st.Exists || st.Holder != ran || st.Term != 1 {
		t.Fatalf("status of the last-run record: %d %+v, want %s's run in term 1", code, st, ran)
	}
}

// TestRunOncePerAFailureRunsAgainAndTheNextPeriodRuns: a job that fails
// does not count as done, so the next copy runs it again, in the same
// period; once it has succeeded, later copies of that period exit 0
// without running it, and the first copy of the next period runs it.
func TestRunOncePerAFailureRunsAgainAndTheNextPeriodRuns(t *testing.T) {
	dir := t.TempDir()
	lockFile := filepath.Join(dir, "leader.json")
	const period = 10 * time.Second
	// Fails (exit 1) while $TEST_DIR/fail exists.
	const job = `echo "$LEADER_ELECTION_TERM" >> "$TEST_DIR/runs"; test ! -e "$TEST_DIR/fail"`
	fail := filepath.Join(dir, "fail")
	if err := os.WriteFile(fail, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := onceCopy(t, dir, "failing", lockFile, period, job).wait(t, 60*time.Second); code != 1 {
		t.Fatalf("the failing copy exited %d, want the job's 1", code)
	}
	if n := len(runs(t, dir)); n != 1 {
		t.Fatalf("the job ran %d times, want 1", n)
	}
	if err := os.Remove(fail); err != nil {
		t.Fatal(err)
	}

	// Two copies of one firing after the failure: one runs the job, the
	// other finds it done.
	fired := time.Now()
	p, q := onceCopy(t, dir, "p", lockFile, period, job), onceCopy(t, dir, "q", lockFile, period, job)
	for _, c := range []*proc{p, q} {
		if code := c.wait(t, 60*time.Second); code != exitOK {
			t.Fatalf("%s exited %d, want 0", c.name, code)
		}
	}
	if n := len(runs(t, dir)); n != 2 {
		t.Fatalf("after the failure and a second firing the job ran %d times, want 2", n)
	}

	// A copy started after the success, in the same period: within half
	// a period of the runner's start, less the second the record drops.
	if took := time.Since(fired); took > period/2-time.Second {
		t.Fatalf("the machine took %v for two copies; the same-period copy would start outside the period", took)
	}
	late := onceCopy(t, dir, "late", lockFile, period, job)
	if code := late.wait(t, 60*time.Second); code != exitOK {
		t.Fatalf("the late copy exited %d, want 0", code)
	}
	if n := len(runs(t, dir)); n != 2 {
		t.Fatalf("a copy in the period of a success ran the job: %d runs, want 2", n)
	}
	if !strings.Contains(logOf(late), "already ran this period: term ") {
		t.Fatalf("the late copy does not say the period is done:\n%s", logOf(late))
	}

	// The next firing, a period later, runs it again.
	poll.Until(t, "the next period", 2*period, func() bool { return time.Since(fired) >= period })
	next := onceCopy(t, dir, "next", lockFile, period, job)
	if code := next.wait(t, 60*time.Second); code != exitOK {
		t.Fatalf("the next period's copy exited %d, want 0", code)
	}
	if got := runs(t, dir); len(got) != 3 {
		t.Fatalf("the next period's copy did not run the job: runs in terms %v, want 3", got)
	}
	if !strings.Contains(logOf(next), "Recorded the run") {
		t.Fatalf("the next period's copy did not record its run:\n%s", logOf(next))
	}
}

// TestRunOncePerCorruptRecordEndsWithItsOwnStatus: a last-run record that
// cannot be read makes the copy exit 65 naming it to delete, without
// running the job (running it might run it twice in one period).
func TestRunOncePerCorruptRecordEndsWithItsOwnStatus(t *testing.T) {
	dir := t.TempDir()
	lockFile := filepath.Join(dir, "leader.json")
	if err := os.WriteFile(lockFile+lastRunSuffix, []byte(`{"version": 3, "record": `), 0o644); err != nil {
		t.Fatal(err)
	}
	p := onceCopy(t, dir, "a", lockFile, time.Hour, `echo "$LEADER_ELECTION_TERM" >> "$TEST_DIR/runs"`)
	if code := p.wait(t, 60*time.Second); code != exitCorrupt {
		t.Fatalf("exit status %d, want %d", code, exitCorrupt)
	}
	if out := logOf(p); !strings.Contains(out, "corrupt") || !strings.Contains(out, "delete it") || !strings.Contains(out, lockFile+lastRunSuffix) {
		t.Fatalf("the output does not name the corrupt record %s and say to delete it:\n%s", lockFile+lastRunSuffix, out)
	}
	if n := len(runs(t, dir)); n != 0 {
		t.Fatalf("the job ran %d times", n)
	}
}

// TestRunOncePerOnEachStore: two copies started for one cron firing run
// the job once on every backend with a store, against its real server:
// the companion record (NAME.last-run beside the lock) is written and read
// through each store's compare-and-swap.
func TestRunOncePerOnEachStore(t *testing.T) {
	for _, b := range stores("once-test") {
		t.Run(b.name, func(t *testing.T) {
			args, env := b.setup(t)
			setEnv(t, env)
			dir := t.TempDir()
			const job = `echo "$LEADER_ELECTION_IDENTITY" >> "$TEST_DIR/runs"; sleep 1`
			a := onceCopyOn(t, dir, "a", args, b.timing, time.Hour, job)
			time.Sleep(300 * time.Millisecond) // cron's jitter between machines, not a wait for anything
			c := onceCopyOn(t, dir, "b", args, b.timing, time.Hour, job)
			for _, p := range []*proc{a, c} {
				if code := p.wait(t, 90*time.Second); code != exitOK {
					t.Fatalf("%s exited %d, want 0:\n%s", p.name, code, logOf(p))
				}
			}
			got := runs(t, dir)
			if len(got) != 1 {
				t.Fatalf("the job ran %d times (by %v), want once", len(got), got)
			}
			other := map[string]*proc{"a": c, "b": a}[got[0]]
			if want := "already ran this period: term 1 finished at "; !strings.Contains(logOf(other), want) || !strings.Contains(logOf(other), " by "+got[0]+`"`) {
				t.Fatalf("%s does not say %q ... by %s:\n%s", other.name, want, got[0], logOf(other))
			}
		})
	}
}
