package poll_test

import (
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/poll"
)

func TestWithinReportsWhetherTheConditionHeldInTime(t *testing.T) {
	n := 0
	if !poll.Within(10*time.Second, func() bool { n++; return n == 3 }) {
		t.Fatal("Within gave up on a condition that held at its third poll")
	}
	if poll.Within(20*time.Millisecond, func() bool { return false }) {
		t.Fatal("Within reported a condition that never held")
	}
}
