package leadertest

import (
	"sync"
	"testing"

	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
)

// ProxyCutter is the Cutter of a harness whose candidates each reach the
// store through a testserver.Proxy of their own: Track records a lock's
// proxy, CutOff stalls it. The zero value is ready; embed it in a harness.
type ProxyCutter struct {
	mu      sync.Mutex
	proxies map[lock.Interface]*testserver.Proxy
}

// Track records that l talks to its store through p.
func (c *ProxyCutter) Track(l lock.Interface, p *testserver.Proxy) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proxies == nil {
		c.proxies = map[lock.Interface]*testserver.Proxy{}
	}
	c.proxies[l] = p
}

// CutOff stalls the proxy of l, a lock passed to Track.
func (c *ProxyCutter) CutOff(t *testing.T, l lock.Interface) func() {
	c.mu.Lock()
	p := c.proxies[l]
	c.mu.Unlock()
	if p == nil {
		t.Fatalf("leadertest: no proxy tracked for %s", l.Describe())
	}
	return p.Stall()
}
