package locktest_test

import (
	"testing"

	"github.com/b3df926d/leaderelection/lock/locktest"
)

func TestMemoryLockConformance(t *testing.T) {
	locktest.RunConformanceTests(t, &locktest.MemoryHarness{}, locktest.Options{})
}
