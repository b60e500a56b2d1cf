package leadertest_test

import (
	"testing"

	"github.com/b3df926d/leaderelection/internal/leadertest"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// The scenarios on the in-memory lock: a quick check of the suite itself;
// every backend runs it against its real server.
func TestScenariosOnMemoryLock(t *testing.T) {
	leadertest.RunScenarios(t, &locktest.MemoryHarness{}, leadertest.Options{HandOvers: 5})
}
