package testserver

import (
	"net/http"
	"sync"
	"time"
)

// RequestCounter is an http.RoundTripper that counts the requests a client
// sends, by method, to measure what a backend costs. It also remembers when
// the last request of each method got a 2xx answer.
type RequestCounter struct {
	// Next sends the requests; nil means http.DefaultTransport.
	Next http.RoundTripper

	mu     sync.Mutex
	counts map[string]int
	lastOK map[string]time.Time
}

// RoundTrip counts req and sends it on.
func (c *RequestCounter) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	if c.counts == nil {
		c.counts, c.lastOK = map[string]int{}, map[string]time.Time{}
	}
	c.counts[req.Method]++
	c.mu.Unlock()
	next := c.Next
	if next == nil {
		next = http.DefaultTransport
	}
	resp, err := next.RoundTrip(req)
	if err == nil && resp.StatusCode/100 == 2 {
		c.mu.Lock()
		c.lastOK[req.Method] = time.Now()
		c.mu.Unlock()
	}
	return resp, err
}

// Count returns how many requests of method were sent.
func (c *RequestCounter) Count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[method]
}

// Total returns how many requests were sent, of every method.
func (c *RequestCounter) Total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, v := range c.counts {
		n += v
	}
	return n
}

// LastOK returns when a request of method last got a 2xx answer (zero if
// never).
func (c *RequestCounter) LastOK(method string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastOK[method]
}

// Reset forgets every count.
func (c *RequestCounter) Reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts, c.lastOK = map[string]int{}, map[string]time.Time{}
}
