package locktest_test

import (
	"sync"
	"testing"

	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

type memHarness struct {
	mu     sync.Mutex
	stores map[string]*locktest.MemoryStore
}

func (h *memHarness) store(name string) *locktest.MemoryStore {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stores[name] == nil {
		h.stores[name] = locktest.NewMemoryStore(name)
	}
	return h.stores[name]
}

func (h *memHarness) NewLock(_ *testing.T, name, identity string) lock.Interface {
	return h.store(name).Lock(identity)
}
func (h *memHarness) Corrupt(_ *testing.T, name string)       { h.store(name).SetRaw([]byte("{not json")) }
func (h *memHarness) Stored(_ *testing.T, name string) []byte { return h.store(name).Raw() }
func (h *memHarness) Block(_ *testing.T, name string) func()  { return h.store(name).Block() }

func TestMemoryLockConformance(t *testing.T) {
	locktest.RunConformanceTests(t, &memHarness{stores: map[string]*locktest.MemoryStore{}}, locktest.Options{})
}
