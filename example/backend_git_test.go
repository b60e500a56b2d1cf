package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

// TestGitBackendHandsOverOnALocalBareRepository runs two example processes
// with --backend=git on a local bare repository: one leads; on SIGTERM it
// releases and the other takes over with the next term; the lock branch
// holds one commit throughout.
func TestGitBackendHandsOverOnALocalBareRepository(t *testing.T) {
	git := testserver.LookBinary(t, "git")
	bin := buildExample(t)
	dir := t.TempDir()
	bare := filepath.Join(dir, "locks.git")
	if out, err := exec.Command(git, "init", "--quiet", "--bare", bare).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	gitArgs := []string{"--backend=git", "--git-url=" + bare, "--git-branch=locks/demo"}
	a := startProc(t, bin, dir, "a", freePort(t), gitArgs...)
	var term int64
	poll.Until(t, "a leads", 30*time.Second, func() bool { s, ok := a.status(); term = s.Term; return ok && s.Leading })
	b := startProc(t, bin, dir, "b", freePort(t), gitArgs...)
	poll.Until(t, "b serves /status", 30*time.Second, func() bool { _, ok := b.status(); return ok })
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := a.exitCode(t, "SIGTERM"); code != 0 {
		t.Fatalf("a exited %d after SIGTERM, want 0", code)
	}
	poll.Until(t, "b leads", 30*time.Second, func() bool { s, ok := b.status(); return ok && s.Leading && s.Term == term+1 })
	out, err := exec.Command(git, "--git-dir", bare, "rev-list", "--count", "refs/heads/locks/demo").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "1" {
		t.Fatalf("lock branch commits: %s (%v), want 1", out, err)
	}
}

func TestGitBackendWithoutURLIsAClearError(t *testing.T) {
	bin := buildExample(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--id=a", "--backend=git", "--health-bind-address=127.0.0.1", "--port="+strconv.Itoa(freePort(t)))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err == nil || ctx.Err() != nil {
		t.Fatalf("without --git-url: %v (context: %v), want a quick non-zero exit", err, ctx.Err())
	}
	if !strings.Contains(stderr.String(), "--git-url is required") {
		t.Fatalf("stderr does not name --git-url:\n%s", stderr.String())
	}
}
