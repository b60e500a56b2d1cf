package electiontest_test

import (
	"testing"

	"github.com/b3df926d/leaderelection/lock/electiontest"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// The scenarios on the in-memory lock: a quick check of the suite itself;
// every backend runs it against its real server.
func TestScenariosOnMemoryLock(t *testing.T) {
	electiontest.RunScenarios(t, func(*testing.T) electiontest.Harness { return &locktest.MemoryHarness{} },
		electiontest.Options{HandOvers: 5})
}
