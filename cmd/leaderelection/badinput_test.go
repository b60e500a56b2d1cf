package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBadInputIsAClearErrorAndTheLockIsNeverTaken runs the binary with
// each kind of bad input: it exits non-zero at once, with a message naming
// the problem, and never creates the lock.
func TestBadInputIsAClearErrorAndTheLockIsNeverTaken(t *testing.T) {
	dir := t.TempDir()
	lockFile := filepath.Join(dir, "leader.json")
	lock := "--lock-file=" + lockFile
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("echo hi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no command", []string{"run", lock}, exitUsage, "no command after --"},
		{"nothing after --", []string{"run", lock, "--"}, exitUsage, "no command after --"},
		{"command without --", []string{"run", lock, "true"}, exitUsage, "put the command after --"},
		{"command not found", []string{"run", lock, "--", "no-such-command-here", "x"}, exitNotFound, `cannot run "no-such-command-here"`},
		{"command not executable", []string{"run", lock, "--", plain}, exitNotFound, "permission denied"},
		{"unknown backend", []string{"run", "--backend=zookeeper", "--", "true"}, exitUsage, `--backend="zookeeper": want one of file, git, gossip, k8s, s3`},
		{"git without url", []string{"run", "--backend=git", "--", "true"}, exitUsage, "--git-url is required"},
		{"s3 without bucket", []string{"run", "--backend=s3", "--", "true"}, exitUsage, "--s3-bucket is required"},
		{"serve: unknown backend", []string{"serve", "--backend=zookeeper"}, exitUsage, `--backend="zookeeper"`},
		{"serve: an argument", []string{"serve", lock, "extra"}, exitUsage, "serve takes no arguments"},
		{"status: git without url", []string{"status", "--backend=git"}, exitUsage, "--git-url is required"},
		{"status: bad output", []string{"status", lock, "-o", "yaml"}, exitUsage, `-o "yaml"`},
		{"lease not above renew", []string{"run", lock, "--leader-elect-lease-duration=2s", "--leader-elect-renew-deadline=2s", "--", "true"}, exitUsage, "LeaseDuration (2s, --leader-elect-lease-duration) must be greater than RenewDeadline (2s, --leader-elect-renew-deadline)"},
		{"zero lease", []string{"run", lock, "--leader-elect-lease-duration=0s", "--", "true"}, exitUsage, "--leader-elect-lease-duration"},
		{"negative --once-per", []string{"run", lock, "--once-per=-1h", "--", "true"}, exitUsage, "--once-per=-1h0m0s: must not be negative"},
		{"too short --once-per", []string{"run", lock, "--once-per=2s", "--", "true"}, exitUsage, "--once-per=2s: want at least 10s"},
		{"--once-per and --recampaign", []string{"run", lock, "--once-per=1h", "--recampaign", "--", "true"}, exitUsage, "--once-per=1h0m0s and --recampaign"},
		{"--once-per without election", []string{"run", lock, "--once-per=1h", "--leader-elect=false", "--", "true"}, exitUsage, "--once-per=1h0m0s and --leader-elect=false"},
		{"--once-per on gossip", []string{"run", "--backend=gossip", "--gossip-insecure", "--gossip-bind=127.0.0.1:0", "--id=v", "--gossip-voters=v", "--once-per=1h", "--", "true"}, exitUsage, "--once-per: --backend=gossip: the gossip backend keeps one record per election"},
		{"--leader-elect-recover", []string{"run", lock, "--leader-elect-recover", "--", "true"}, exitUsage, "--leader-elect-recover: not available here"},
		{"serve: --leader-elect-recover-deadline", []string{"serve", lock, "--leader-elect-recover-deadline=1m"}, exitUsage, "--leader-elect-recover-deadline: not available here"},
		{"unknown flag", []string{"run", lock, "--no-such-flag", "--", "true"}, exitUsage, "no-such-flag"},
		{"unknown log format", []string{"run", lock, "--logging-format=xml", "--", "true"}, exitUsage, `--logging-format="xml": want text or json`},
		{"unknown command", []string{"lead"}, exitUsage, `unknown command "lead"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := leCommand(t, tc.args...)
			if code != tc.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr does not mention %q:\n%s", tc.want, stderr)
			}
			if _, err := os.Stat(lockFile); err == nil {
				t.Fatalf("bad input created the lock file")
			}
		})
	}
}

// Each command's --help lists the command's own flags first, then the
// backends', the election's and klog's, each under its heading; --version
// prints the build and exits 0, before and after the command name.
func TestHelpListsTheCommandsOwnFlagsFirstAndVersionExitsZero(t *testing.T) {
	for _, cmd := range []struct {
		name string
		own  string // one of its own flags
	}{{"run", "--shell"}, {"serve", "--port"}, {"status", "--output"}} {
		code, _, stderr := leCommand(t, cmd.name, "--help")
		if code != exitOK {
			t.Errorf("%s --help: exit %d, want 0", cmd.name, code)
		}
		own, backend, election, logging := strings.Index(stderr, cmd.own), strings.Index(stderr, "Lock backend flags:"), strings.Index(stderr, "Election flags"), strings.Index(stderr, "Logging flags (klog):")
		klogFlag := strings.Index(stderr, "--alsologtostderr")
		if own < 0 || !(own < backend && backend < election && election < logging && logging < klogFlag) {
			t.Errorf("%s --help: want its own flags (%s), then the backend, election and logging groups, klog's flags last; got:\n%s", cmd.name, cmd.own, stderr)
		}
	}
	for _, args := range [][]string{{"--version"}, {"version"}, {"run", "--version"}, {"status", "--version"}} {
		code, stdout, stderr := leCommand(t, args...)
		if code != exitOK || !strings.HasPrefix(stdout, "leaderelection ") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 0 and the version", args, code, stdout, stderr)
		}
	}
}
