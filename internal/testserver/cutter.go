package testserver

import (
	"sync"
	"testing"

	"github.com/b3df926d/leaderelection/lock"
)

// ProxyCutter is the locktest.Cutter (and locktest.Blocker) of a harness
// whose candidates each reach the store through a Proxy of their own:
// Track records a lock's proxy, CutOff stalls it, Block stalls them all,
// Refuse makes them all refuse connections.
// The zero value is ready; embed it in a harness.
type ProxyCutter struct {
	mu      sync.Mutex
	proxies map[lock.Interface]*Proxy
}

// Track records that l talks to its store through p.
func (c *ProxyCutter) Track(l lock.Interface, p *Proxy) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proxies == nil {
		c.proxies = map[lock.Interface]*Proxy{}
	}
	c.proxies[l] = p
}

// Proxy returns the proxy of l, a lock passed to Track.
func (c *ProxyCutter) Proxy(l lock.Interface) *Proxy {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proxies[l]
}

// CutOff stalls the proxy of l, a lock passed to Track.
func (c *ProxyCutter) CutOff(t *testing.T, l lock.Interface) func() {
	p := c.Proxy(l)
	if p == nil {
		t.Fatalf("testserver: no proxy tracked for %s", l.Describe())
	}
	return p.Stall()
}

// Block stalls the proxy of every lock passed to Track so far: the store
// stops answering them all (a harness's locks are on the one record its
// test uses).
func (c *ProxyCutter) Block(*testing.T, string) (unblock func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var resumes []func()
	for _, p := range c.proxies {
		resumes = append(resumes, p.Stall())
	}
	return func() {
		for _, r := range resumes {
			r()
		}
	}
}

// Refuse makes the proxy of every lock passed to Track so far refuse
// connections and drop those open (Proxy.Refuse), as a server that is
// down does, until restore.
func (c *ProxyCutter) Refuse(t *testing.T, _ string) (restore func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var restores []func() error
	for _, p := range c.proxies {
		restores = append(restores, p.Refuse())
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			for _, r := range restores {
				if err := r(); err != nil {
					t.Errorf("testserver: %v", err)
				}
			}
		})
	}
}
