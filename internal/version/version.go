// Package version reports the build of a command: the module version and
// the VCS revision Go stamped into the binary.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// String is "<name> <module version> (<revision>[, modified]) <go version>",
// with "(devel)" and "unknown revision" where the build does not say.
func String(name string) string {
	v, rev, modified := "(devel)", "unknown revision", false
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
				if len(rev) > 12 {
					rev = rev[:12]
				}
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	if modified {
		rev += ", modified"
	}
	return fmt.Sprintf("%s %s (%s) %s", name, v, rev, runtime.Version())
}
