package testserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/internal/hold"
)

// Proxy forwards TCP connections from a 127.0.0.1 port to a server, and can
// stall, delay or refuse them to simulate a store that stops answering, a
// slow network or a server that is down. Tests point clients at Addr
// instead of the server.
type Proxy struct {
	addr   string
	target string

	gate   hold.Gate          // held: data waits
	closed context.Context    // ends at Close, releasing held data
	stop   context.CancelFunc // ends closed

	mu    sync.Mutex
	ln    net.Listener // nil while refusing
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
	p := &Proxy{ln: ln, addr: ln.Addr().String(), target: target, conns: map[net.Conn]struct{}{}}
	p.closed, p.stop = context.WithCancel(context.Background())
	p.wg.Add(1)
	go p.accept(ln)
	t.Cleanup(p.Close)
	return p
}

// Addr is the proxy's host:port.
func (p *Proxy) Addr() string { return p.addr }

// Refuse stops listening and closes every open connection, until the
// returned function listens on the same port again (and returns its
// error, should the port have been taken meanwhile): clients get
// "connection refused", as from a server that is down, not a reset after
// connecting (which client-go's reflector treats differently: it resumes
// a watch after a refusal, and lists again after other errors).
func (p *Proxy) Refuse() (restore func() error) {
	p.hangUp()
	var once sync.Once
	var err error
	return func() error {
		once.Do(func() { err = p.listenAgain() })
		return err
	}
}

// listenAgain listens on Addr again after Refuse.
func (p *Proxy) listenAgain() error {
	var ln net.Listener
	var err error
	// Another socket may hold the port for a moment (an outgoing
	// connection given it as its local port): try for a few seconds.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if ln, err = net.Listen("tcp", p.addr); err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // retrying a bind, not synchronisation
	}
	if err != nil {
		return fmt.Errorf("proxy: listening on %s again: %w", p.addr, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Err() != nil {
		ln.Close()
		return nil
	}
	p.ln = ln
	p.wg.Add(1)
	go p.accept(ln)
	return nil
}

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
	p.mu.Unlock()
	p.hangUp()
	p.wg.Wait()
}

// hangUp stops listening and closes every open connection, as a server
// that goes down does. A connection accepted meanwhile is not tracked
// (track: the listener is no longer p.ln) but closed.
func (p *Proxy) hangUp() {
	p.mu.Lock()
	ln := p.ln
	p.ln = nil
	p.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	p.CutConnections()
}

// track records c, accepted on ln (or dialled for it), unless the proxy
// closed or stopped listening on ln meanwhile.
func (p *Proxy) track(c net.Conn, ln net.Listener) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed.Err() != nil || p.ln != ln {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		in, err := ln.Accept()
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
		if !p.track(in, ln) || !p.track(out, ln) {
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
