// Package freeport picks TCP ports on 127.0.0.1 for a server a test (or the
// demo) is about to start in another process, which must be told its port
// before it listens.
//
// The usual way, listening on port 0 and closing the listener, hands out a
// port from the kernel's ephemeral range, the range every outgoing
// connection and every other listener on port 0 draws from: between the
// close and the server's own listen, a client connecting anywhere (a test
// reaching its API server, a memberlist node dialling a peer) may be given
// that port as its local port, and the server then fails with "address
// already in use" (a replica of the fault campaign did, in CI). Pick hands
// out ports below the ephemeral range instead, which the kernel never gives
// to anyone on its own, chosen at random so that test processes running
// side by side rarely try the same one, never twice in one process, and
// checked free by listening on it.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the lowest port Pick hands out.
const lowest = 10000

var (
	mu     sync.Mutex
	issued = map[int]bool{}
)

// Pick returns a port on 127.0.0.1 that nothing listened on a moment ago,
// below the ephemeral range (see the package doc). Where that range cannot
// be read, or leaves no room below it, it falls back to port 0's pick.
func Pick() (int, error) {
	low := ephemeralLow()
	if low-lowest < 1000 {
		return pickZero()
	}
	mu.Lock()
	defer mu.Unlock()
	for range 200 {
		p := lowest + rand.IntN(low-lowest)
		if issued[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue // taken: try another
		}
		l.Close()
		issued[p] = true
		return p, nil
	}
	return 0, fmt.Errorf("freeport: no free port found in [%d, %d) after 200 tries", lowest, low)
}

// ephemeralLow is the lowest port of the kernel's ephemeral range (Linux:
// /proc/sys/net/ipv4/ip_local_port_range), or 0 if unknown.
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	low, err := strconv.Atoi(f[0])
	if err != nil {
		return 0
	}
	return low
}

// pickZero is the usual pick: listen on port 0, close.
func pickZero() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("freeport: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
