//go:build !linux

package leaderelection

import "time"

// bootTime is unavailable here: a leader on a suspended host notices only
// at its next renewal (see docs/elector.md).
func bootTime() (time.Duration, bool) { return 0, false }
