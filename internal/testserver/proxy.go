package testserver

import (
	"context"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/hold"
)

// Proxy forwards TCP connections from a 127.0.0.1 port to a server, and can
// stall or delay them to simulate a store that stops answering or a slow
// network. Tests point clients at Addr instead of the server.
type Proxy struct {
	ln     net.Listener
	target string

	gate   hold.Gate          // held: data waits
	closed context.Context    // ends at Close, releasing held data
	stop   context.CancelFunc // ends closed

	mu    sync.Mutex
	delay time.Duration
	conns map[net.Conn]struct{}
	total int // connections accepted
	wg    sync.WaitGroup
}

// StartProxy starts a proxy to target (host:port), stopped when t ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p := &Proxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	p.closed, p.stop = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// SetDelay adds latency d to every chunk of data, in both directions: each
// is forwarded d after it arrived, in order, so a round trip costs 2d
// however many chunks it takes.
func (p *Proxy) SetDelay(d time.Duration) {
	p.mu.Lock()
	p.delay = d
	p.mu.Unlock()
}

// Stall holds all data, in both directions and on new connections too, until
// the returned function is called. Connections stay open, as with a server
// that hangs rather than refuses.
func (p *Proxy) Stall() (resume func()) { return p.gate.Hold() }

// CutConnections closes every open connection (new ones are still
// accepted), as a network blip or a server restart would.
func (p *Proxy) CutConnections() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// Connections returns how many connections the proxy has accepted: for a
// protocol with one connection per operation (git://), the requests made.
func (p *Proxy) Connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// Close stops accepting, closes every connection and waits for the copiers.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed.Err() != nil {
		p.mu.Unlock()
		return
	}
	p.stop()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.ln.Close()
	p.wg.Wait()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Err() != nil {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		p.total++
		p.mu.Unlock()
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in) || !p.track(out) {
			in.Close()
			out.Close()
			continue
		}
		p.wg.Add(2)
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

// pipe copies src to dst. A reader stamps each chunk with the time it may
// be forwarded (now + delay) and a writer forwards chunks in order at that
// time: a delay line, so that latency adds to each round trip once however
// many chunks are in flight, as on a real network.
func (p *Proxy) pipe(dst, src net.Conn) {
	defer p.wg.Done()
	defer func() {
		dst.Close()
		src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	type chunk struct {
		data []byte
		due  time.Time
	}
	queue := make(chan chunk, 256)
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		for c := range queue {
			if p.closed.Err() != nil || p.gate.Wait(p.closed) != nil { // held until resumed or closed
				return
			}
			if d := time.Until(c.due); d > 0 {
				time.Sleep(d) // simulated network latency, not synchronisation
			}
			if _, err := dst.Write(c.data); err != nil {
				src.Close() // stops the reader
				return
			}
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
	}()
	defer func() { <-writerDone }()
	defer close(queue)
	for {
		buf := make([]byte, 32*1024)
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			delay := p.delay
			p.mu.Unlock()
			select {
			case queue <- chunk{data: buf[:n], due: time.Now().Add(delay)}:
			case <-writerDone:
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close() // a broken connection breaks the other side too
			}
			return
		}
	}
}
