package testserver

import (
	"bufio"
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// echo serves a line echo on 127.0.0.1 until t ends.
func echo(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ServeConns(t, ln, func(c net.Conn) { io.Copy(c, c) })
	return ln.Addr().String()
}

// Latency is a delay line: chunks in flight together arrive together, one
// delay later, and in order; it is not a delay per chunk.
func TestProxyDelayIsLatencyNotPerChunk(t *testing.T) {
	p := StartProxy(t, echo(t))
	const delay = 200 * time.Millisecond
	p.SetDelay(delay)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	start := time.Now()
	const n = 10
	for i := range n {
		if _, err := c.Write([]byte{byte('a' + i), '\n'}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line != string([]byte{byte('a' + i), '\n'}) {
			t.Fatalf("line %d = %q: out of order", i, line)
		}
	}
	// There and back: two delays; ten chunks one after the other would be
	// twenty.
	if took := time.Since(start); took < 2*delay || took >= n*delay {
		t.Fatalf("%d echoed chunks took %v, want one round trip of latency (%v)", n, took, 2*delay)
	}
	if got := p.Connections(); got != 1 {
		t.Fatalf("Connections() = %d, want 1", got)
	}
}

func TestProxyCutConnectionsClosesThem(t *testing.T) {
	p := StartProxy(t, echo(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("x\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(c).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	p.CutConnections()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("read after CutConnections succeeded")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("connection still open 10s after CutConnections")
	}
}

// Refuse is a server that is down: open connections close, new ones are
// refused (ECONNREFUSED, not a reset), and after restore the same address
// forwards again.
func TestProxyRefuseRefusesUntilRestored(t *testing.T) {
	p := StartProxy(t, echo(t))
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	restore := p.Refuse()
	if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
		t.Fatal("an open connection still answers while the proxy refuses")
	}
	if c2, err := net.Dial("tcp", p.Addr()); !errors.Is(err, syscall.ECONNREFUSED) {
		if c2 != nil {
			c2.Close()
		}
		t.Fatalf("dial while refusing: %v, want ECONNREFUSED", err)
	}
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	c3, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatalf("dial after restore: %v", err)
	}
	defer c3.Close()
	if _, err := c3.Write([]byte("y\n")); err != nil {
		t.Fatal(err)
	}
	if line, err := bufio.NewReader(c3).ReadString('\n'); err != nil || line != "y\n" {
		t.Fatalf("echo after restore = %q, %v", line, err)
	}
}
