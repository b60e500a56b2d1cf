// Package testserver starts real servers for tests on 127.0.0.1, on ports
// chosen at run time, and stops them when the test ends.
//
// A test that needs a server binary that is not installed skips, unless
// LE_REQUIRE_SERVERS=1 is set (as .ci/run does), in which case it fails.
package testserver

import (
	"github.com/b3df926d/leaderelection/internal/freeport"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Required reports whether missing servers must fail tests rather than skip
// them (LE_REQUIRE_SERVERS=1).
func Required() bool { return os.Getenv("LE_REQUIRE_SERVERS") == "1" }

// Missing skips t, or fails it under LE_REQUIRE_SERVERS=1, because what is
// needed to start a server is not there.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf("LE_REQUIRE_SERVERS=1 but "+format, args...)
	}
	t.Skipf("skipping: "+format, args...)
}

// LookBinary finds a server binary: in $LE_BIN_DIR (where hack/test.sh
// installs what it builds; default ~/.cache/leaderelection/bin), then in
// $GOPATH/bin and ~/go/bin, then on $PATH. It calls
// Missing when the binary is nowhere.
func LookBinary(t testing.TB, name string) string {
	t.Helper()
	var dirs []string
	if d := os.Getenv("LE_BIN_DIR"); d != "" {
		dirs = append(dirs, d)
	}
	if gp := os.Getenv("GOPATH"); gp != "" {
		dirs = append(dirs, filepath.Join(gp, "bin"))
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, ".cache", "leaderelection", "bin"), filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	Missing(t, "%s not found in $LE_BIN_DIR, $GOPATH/bin or $PATH (bash .ci/run installs it)", name)
	return ""
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	p, err := freeport.Pick()
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	return p
}
