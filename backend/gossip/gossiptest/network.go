// Package gossiptest injects network faults between memberlist nodes in one
// process: a Network hands each node a Transport that wraps memberlist's own
// NetTransport (UDP and TCP on 127.0.0.1) and, per directed link, can cut,
// drop, delay, duplicate and reorder what the node sends, or hold it (as a
// paused process would) and deliver it later.
//
// Links are keyed by the names given to Transport (or Register), whatever
// memberlist node names the nodes have: a message's destination is the
// node whose transport listens at the address it goes to. Faults are
// applied where a message leaves its sender, so a link from A to B is cut
// by A's transport; every node of a test must therefore use a Transport of
// the same Network, or, with nodes in separate processes, each process a
// Network of its own given the same faults and every node's address
// (TransportAt, Register). A cut stream dial hangs until its timeout, as a dial into a
// partition does, and a stream whose reply direction is cut fails its
// reads.
package gossiptest

import (
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// Link is the behaviour of one directed link. The zero value delivers
// everything at once.
type Link struct {
	// Cut drops every packet and fails every stream dial (after its
	// timeout).
	Cut bool
	// Hold keeps every packet and stream write until the hold is lifted,
	// then delivers them, late and stale, as a paused process would.
	Hold bool
	// Drop is the probability that a message is lost: a packet is not
	// sent, a stream's bytes go nowhere.
	Drop float64
	// Duplicate is the probability that a message is delivered twice.
	Duplicate float64
	// Delay, plus a uniform random share of Jitter, is added before a
	// message is delivered. Jitter reorders messages.
	Delay, Jitter time.Duration
}

func (l Link) faulty() bool { return l != Link{} }

// Network is the set of links between the nodes of a test.
type Network struct {
	mu     sync.Mutex
	links  map[[2]string]Link
	names  map[string]string // advertised address → node name
	rng    *rand.Rand
	held   []func() // deliveries waiting for a hold to lift
	closed bool
	wg     sync.WaitGroup // delayed deliveries in flight
	stats  map[[2]string]*Counts
}

// Counts are the messages a node sent to another, as seen by its
// transport, before faults are applied.
type Counts struct {
	Packets, Streams int
}

// NewNetwork returns a network where every link is healthy. seed makes its
// random choices repeatable.
func NewNetwork(seed uint64) *Network {
	return &Network{
		links: map[[2]string]Link{},
		names: map[string]string{},
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		stats: map[[2]string]*Counts{},
	}
}

// Transport starts a NetTransport for node name on 127.0.0.1, on a port
// chosen by the kernel, wrapped so that this network's faults apply to
// what it sends. Pass it as memberlist.Config.Transport.
func (n *Network) Transport(name string) (*Transport, error) {
	return n.TransportAt(name, 0)
}

// TransportAt is Transport on 127.0.0.1:port (0: a port chosen by the
// kernel), for a node that others must find again at a known address after
// a restart: one process per node, each with a Network of its own (the
// fault campaign's example build, see Register).
func (n *Network) TransportAt(name string, port int) (*Transport, error) {
	inner, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
		BindAddrs: []string{"127.0.0.1"},
		BindPort:  port,
		Logger:    log.New(io.Discard, "", 0),
	})
	if err != nil {
		return nil, fmt.Errorf("gossiptest: transport for %s: %w", name, err)
	}
	t := &Transport{NetTransport: inner, net: n, name: name}
	n.mu.Lock()
	n.names[t.Addr()] = name
	n.mu.Unlock()
	return t, nil
}

// Register records that node name listens at addr ("127.0.0.1:port"), so
// that faults apply to everything sent to that address when name's
// transport is not on this Network: when each node is a process of its
// own, every process registers every node's address and gives the same
// faults to its own Network, and each applies them to what it sends.
func (n *Network) Register(name, addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.names[addr] = name
}

// Set replaces the behaviour of the link from → to.
func (n *Network) Set(from, to string, l Link) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if l.faulty() {
		n.links[[2]string{from, to}] = l
	} else {
		delete(n.links, [2]string{from, to})
	}
	n.releaseLocked()
}

// SetAll gives every link between distinct nodes of names the behaviour l.
func (n *Network) SetAll(names []string, l Link) {
	for _, a := range names {
		for _, b := range names {
			if a != b {
				n.Set(a, b, l)
			}
		}
	}
}

// Cut cuts the link from → to (one direction).
func (n *Network) Cut(from, to string) { n.Set(from, to, Link{Cut: true}) }

// Partition cuts every link between nodes of different groups, both ways,
// and heals every link within a group.
func (n *Network) Partition(groups ...[]string) {
	for gi, g := range groups {
		for _, a := range g {
			for gj, h := range groups {
				for _, b := range h {
					if a == b {
						continue
					}
					if gi == gj {
						n.Set(a, b, Link{})
					} else {
						n.Set(a, b, Link{Cut: true})
					}
				}
			}
		}
	}
}

// Isolate cuts node off from all of others, both ways.
func (n *Network) Isolate(node string, others []string) {
	for _, o := range others {
		if o != node {
			n.Set(node, o, Link{Cut: true})
			n.Set(o, node, Link{Cut: true})
		}
	}
}

// Pause holds everything node sends to, and receives from, others until
// the returned function is called, which delivers it all.
func (n *Network) Pause(node string, others []string) (resume func()) {
	for _, o := range others {
		if o != node {
			n.Set(node, o, Link{Hold: true})
			n.Set(o, node, Link{Hold: true})
		}
	}
	return func() {
		for _, o := range others {
			if o != node {
				n.Set(node, o, Link{})
				n.Set(o, node, Link{})
			}
		}
	}
}

// Heal makes every link healthy and delivers everything held.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.links = map[[2]string]Link{}
	n.releaseLocked()
}

// Counts returns how many packets and streams from sent to to so far.
func (n *Network) Counts(from, to string) Counts {
	n.mu.Lock()
	defer n.mu.Unlock()
	if c := n.stats[[2]string{from, to}]; c != nil {
		return *c
	}
	return Counts{}
}

// Close stops delayed and held deliveries and waits for those in flight.
func (n *Network) Close() {
	n.mu.Lock()
	n.closed = true
	n.held = nil
	n.mu.Unlock()
	n.wg.Wait()
}

// releaseLocked delivers what is held on links no longer held.
func (n *Network) releaseLocked() {
	if len(n.held) == 0 {
		return
	}
	held := n.held
	n.held = nil
	for _, f := range held {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); f() }()
	}
}

// plan decides what happens to one message from → to: whether it is
// delivered, after how long, and how many times. hold is true when it must
// wait for the link's hold to lift (deliver is then queued by the caller
// through n.hold).
type plan struct {
	cut, hold, drop bool
	copies          int
	delay           time.Duration
}

func (n *Network) plan(from, to string, stream bool) plan {
	n.mu.Lock()
	defer n.mu.Unlock()
	key := [2]string{from, to}
	c := n.stats[key]
	if c == nil {
		c = &Counts{}
		n.stats[key] = c
	}
	if stream {
		c.Streams++
	} else {
		c.Packets++
	}
	l := n.links[key]
	p := plan{cut: l.Cut, hold: l.Hold, copies: 1, delay: l.Delay}
	if l.Drop > 0 && n.rng.Float64() < l.Drop {
		p.drop = true
	}
	if l.Duplicate > 0 && n.rng.Float64() < l.Duplicate {
		p.copies = 2
	}
	if l.Jitter > 0 {
		p.delay += time.Duration(n.rng.Int64N(int64(l.Jitter)))
	}
	return p
}

// hold queues f until the link from → to is no longer held; it reports
// false (and does not queue) if the link is no longer held already.
func (n *Network) hold(from, to string, f func()) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed || !n.links[[2]string{from, to}].Hold {
		return false
	}
	n.held = append(n.held, f)
	return true
}

// after runs f after d, tracked so that Close can wait for it.
func (n *Network) after(d time.Duration, f func()) {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		return
	}
	n.wg.Add(1)
	n.mu.Unlock()
	time.AfterFunc(d, func() { defer n.wg.Done(); f() })
}

func (n *Network) link(from, to string) Link {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.links[[2]string{from, to}]
}

// nameOf is the node a message to a goes to: the one whose transport
// listens at a's address (registered by TransportAt or Register), else
// a.Name. The address comes first because a memberlist node name need
// not be a name on this Network (the gossip backend names its memberlist
// node identity#incarnation, one per process, and its own messages by
// identity), and memberlist addresses requests by node name and replies
// by address alone: keyed by a.Name, a cut would let memberlist's pings,
// gossip and push/pull through and lose only their replies.
func (n *Network) nameOf(a memberlist.Address) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if name, ok := n.names[a.Addr]; ok {
		return name
	}
	return a.Name
}

// Transport is one node's memberlist transport on a Network.
type Transport struct {
	*memberlist.NetTransport
	net  *Network
	name string
}

var _ memberlist.NodeAwareTransport = (*Transport)(nil)

// Addr is the "127.0.0.1:port" the transport listens on, for joining.
func (t *Transport) Addr() string {
	return fmt.Sprintf("127.0.0.1:%d", t.GetAutoBindPort())
}

// Name is the node this transport belongs to.
func (t *Transport) Name() string { return t.name }

// WriteTo implements memberlist.Transport.
func (t *Transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress implements memberlist.NodeAwareTransport.
func (t *Transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	to := t.net.nameOf(a)
	p := t.net.plan(t.name, to, false)
	now := time.Now()
	if p.cut || p.drop {
		return now, nil
	}
	buf := append([]byte(nil), b...)
	send := func() {
		for range p.copies {
			_, _ = t.NetTransport.WriteToAddress(buf, a)
		}
	}
	switch {
	case p.hold && t.net.hold(t.name, to, send):
	case p.delay > 0:
		t.net.after(p.delay, send)
	default:
		send()
	}
	return now, nil
}

// DialTimeout implements memberlist.Transport.
func (t *Transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// ErrCut is returned by a dial over a cut link.
var ErrCut = errors.New("gossiptest: link cut")

// DialAddressTimeout implements memberlist.NodeAwareTransport.
func (t *Transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	to := t.net.nameOf(a)
	p := t.net.plan(t.name, to, true)
	if p.cut {
		// A dial into a partition hangs until it times out.
		time.Sleep(timeout)
		return nil, fmt.Errorf("dial %s (%s): %w", to, a.Addr, ErrCut)
	}
	c := &conn{t: t, to: to, addr: a, timeout: timeout, plan: p}
	if p.drop || p.hold || p.delay > 0 || p.copies > 1 {
		// Buffer the writes; deliver them on Close as planned. Streams
		// that read (memberlist's push/pull) get a real connection
		// at their first read instead.
		c.buffered = true
		return c, nil
	}
	inner, err := t.NetTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	c.Conn = inner
	return c, nil
}

// conn is a stream from t to a peer. Unbuffered, it is a real connection
// whose reads fail while the reply direction is cut. Buffered, it collects
// writes and delivers them on Close after the planned delay (or hold), as
// many times as planned, unless dropped.
type conn struct {
	net.Conn // nil while buffered
	t        *Transport
	to       string
	addr     memberlist.Address
	timeout  time.Duration
	plan     plan

	mu       sync.Mutex
	buffered bool
	buf      []byte
	closed   bool
	dl       time.Time // deadline set while buffered
}

func (c *conn) Write(b []byte) (int, error) {
	c.mu.Lock()
	if c.buffered {
		c.buf = append(c.buf, b...)
		c.mu.Unlock()
		return len(b), nil
	}
	c.mu.Unlock()
	return c.Conn.Write(b)
}

func (c *conn) Read(b []byte) (int, error) {
	c.mu.Lock()
	if c.buffered {
		// A two-way stream: faults beyond a cut do not apply to it.
		inner, err := c.t.NetTransport.DialAddressTimeout(c.addr, c.timeout)
		if err != nil {
			c.mu.Unlock()
			return 0, err
		}
		if !c.dl.IsZero() {
			_ = inner.SetDeadline(c.dl)
		}
		if _, err := inner.Write(c.buf); err != nil {
			c.mu.Unlock()
			inner.Close()
			return 0, err
		}
		c.Conn, c.buffered, c.buf = inner, false, nil
	}
	c.mu.Unlock()
	if c.t.net.link(c.to, c.t.name).Cut {
		return 0, fmt.Errorf("read from %s: %w", c.to, ErrCut)
	}
	n, err := c.Conn.Read(b)
	if err == nil && c.t.net.link(c.to, c.t.name).Cut {
		return 0, fmt.Errorf("read from %s: %w", c.to, ErrCut)
	}
	return n, err
}

func (c *conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	buffered, buf, p := c.buffered, c.buf, c.plan
	c.mu.Unlock()
	if !buffered {
		return c.Conn.Close()
	}
	if p.drop {
		return nil
	}
	t, a, timeout := c.t, c.addr, c.timeout
	deliver := func() {
		for range p.copies {
			inner, err := t.NetTransport.DialAddressTimeout(a, timeout)
			if err != nil {
				return
			}
			_, _ = inner.Write(buf)
			_ = inner.Close()
		}
	}
	switch {
	case p.hold && t.net.hold(t.name, c.to, deliver):
	case p.delay > 0:
		t.net.after(p.delay, deliver)
	default:
		t.net.after(0, deliver)
	}
	return nil
}

func (c *conn) LocalAddr() net.Addr {
	if c.Conn != nil {
		return c.Conn.LocalAddr()
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
}

func (c *conn) RemoteAddr() net.Addr {
	if c.Conn != nil {
		return c.Conn.RemoteAddr()
	}
	addr, _ := net.ResolveTCPAddr("tcp", c.addr.Addr)
	return addr
}

func (c *conn) SetDeadline(d time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.Conn != nil {
		return c.Conn.SetDeadline(d)
	}
	c.dl = d
	return nil
}

func (c *conn) SetReadDeadline(d time.Time) error { return c.SetDeadline(d) }

func (c *conn) SetWriteDeadline(d time.Time) error { return c.SetDeadline(d) }
