package gossip

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"github.com/hashicorp/memberlist"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
)

// maxInflightSends bounds the goroutines sending messages; beyond it a
// message is dropped, which the protocol tolerates like any loss.
const maxInflightSends = 256

// node is this process's membership and messaging: memberlist, the
// envelope layer, request ids and reply routing.
type node struct {
	s   *settings
	log logr.Logger
	m   *metrics
	inc uint64
	// started is when this process started (Unix nanoseconds, by its
	// clock): it orders the processes of one identity (see process).
	started int64
	ml      *memberlist.Memberlist
	addr    string // advertised host:port
	// twinAfter is how long two live processes with one identity are
	// taken for a restart (the old one crashed, its replacement started)
	// before they are reported as a misconfiguration: about twice the
	// time memberlist takes to declare a crashed member dead.
	twinAfter func(members int) time.Duration

	// handle answers a request (nil reply: no answer) or takes a push.
	handle func(*envelope) *envelope
	// ready is set once New has set handle and everything it uses:
	// memberlist listens as soon as it is created, and a restarted
	// voter's peers keep sending to its address, so messages arrive
	// before; they are dropped, as lost ones are.
	ready atomic.Bool

	nextID  atomic.Uint64
	mu      sync.Mutex
	pending map[uint64]chan *envelope
	// procs is memberlist's view, the alive members by memberlist node
	// name (this process included), kept from its event callbacks: the
	// *Node values Members() returns are updated in place under
	// memberlist's lock, so they are read only inside its callbacks.
	procs map[string]process
	// alive and incs are, by identity, the address and incarnation of its
	// current process: the one started last among those memberlist sees
	// alive (this process, for this identity). A process restarted at a
	// new address is current as soon as memberlist tells of it, while its
	// predecessor, crashed, is still alive in memberlist's view.
	alive map[string]string
	incs  map[string]uint64
	// addrs are the last known addresses by identity: memberlist's
	// failure detector decides who gossips, not who may vote, so a voter
	// it suspects (or declared dead during a partition) is still asked.
	addrs map[string]string
	// twins are the pairs of processes (memberlist node names) with one
	// identity whose check is scheduled or done (see twinCheckLocked).
	twins   map[[2]string]bool
	changed chan struct{} // closed and replaced when membership changes

	// rivals counts, on a voter, the other processes of its own identity
	// that memberlist sees alive or removed less than twinAfter ago, and
	// that are not proven gone (gone: their address refused a
	// connection); rivalGen counts the times it rose from zero. The
	// voter's acceptor answers only while there is none, and only once its
	// guard has released it after every such rise (see rivalsLocked and
	// Lock.guard).
	rivals   atomic.Int32
	rivalGen atomic.Uint64
	gone     map[string]bool    // memberlist names
	probing  map[string]bool    // memberlist names
	removed  map[string]removal // memberlist names
	tr       memberlist.Transport
	dialWait time.Duration // a probe's dial timeout

	sendSlots chan struct{}
	wg        sync.WaitGroup
	stop      chan struct{}
	stopped   atomic.Bool
}

func randUint64() uint64 {
	var b [8]byte
	if _, err := crand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on supported platforms
	}
	return binary.LittleEndian.Uint64(b[:])
}

// newNode creates the memberlist (listening, not yet joined).
func newNode(s *settings, logger logr.Logger, m *metrics) (*node, error) {
	n := &node{
		s:         s,
		log:       logger,
		m:         m,
		inc:       randUint64(),
		started:   time.Now().UnixNano(),
		pending:   map[uint64]chan *envelope{},
		procs:     map[string]process{},
		addrs:     map[string]string{},
		alive:     map[string]string{},
		incs:      map[string]uint64{},
		twins:     map[[2]string]bool{},
		gone:      map[string]bool{},
		probing:   map[string]bool{},
		removed:   map[string]removal{},
		changed:   make(chan struct{}),
		sendSlots: make(chan struct{}, maxInflightSends),
		stop:      make(chan struct{}),
	}
	n.nextID.Store(randUint64() >> 1)

	c, _ := s.Preset.config()
	// A node name per process, not per identity: memberlist admits a
	// name at a new address only once the old one has left or been dead
	// for DeadNodeReclaimTime, and a restarted process (a pod's new IP,
	// a new port) must vote at once. The identity travels in NodeMeta.
	c.Name = fmt.Sprintf("%s#%016x", s.Identity, n.inc)
	c.Label = s.Name
	c.Delegate = delegate{n}
	c.Conflict = delegate{n}
	c.Events = delegate{n}
	c.Logger = log.New(&mlLog{n: n}, "", 0)
	if len(s.key) > 0 {
		c.SecretKey = s.key
	}
	if s.Transport != nil {
		c.Transport = s.Transport
	} else {
		t, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{s.bindHost},
			BindPort:  s.bindPort,
			Logger:    c.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("gossip: Options.Bind %s: %w", net.JoinHostPort(s.bindHost, strconv.Itoa(s.bindPort)), err)
		}
		c.Transport = t
		c.BindAddr, c.BindPort = s.bindHost, t.GetAutoBindPort()
		c.AdvertisePort = c.BindPort
	}
	if s.advHost != "" {
		c.AdvertiseAddr, c.AdvertisePort = s.advHost, s.advPort
	}
	if s.Memberlist != nil {
		s.Memberlist(c)
	}
	n.twinAfter = func(members int) time.Duration { return 2 * deadAfter(c, members) }
	n.tr, n.dialWait = c.Transport, max(c.ProbeTimeout, 100*time.Millisecond)
	ml, err := memberlist.Create(c)
	if err != nil {
		_ = c.Transport.Shutdown()
		return nil, fmt.Errorf("gossip: starting memberlist for %q: %w", s.Identity, err)
	}
	n.ml = ml
	self := ml.LocalNode()
	n.addr = net.JoinHostPort(self.Addr.String(), strconv.Itoa(int(self.Port)))
	return n, nil
}

// start joins the seeds and keeps re-joining them.
func (n *node) start() {
	_, every := n.s.Preset.config()
	if n.s.RejoinInterval > 0 {
		every = n.s.RejoinInterval
	}
	n.join()
	if len(n.s.Join) == 0 {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-n.stop:
				return
			case <-t.C:
				n.join()
			}
		}
	}()
}

// join contacts the seeds that are not alive members (nor this node).
// memberlist never merges two halves of a healed partition by itself, so
// this runs periodically; a seed already in the cluster costs nothing.
func (n *node) join() {
	alive := map[string]bool{n.addr: true}
	n.mu.Lock()
	for _, p := range n.procs {
		alive[p.addr] = true
	}
	n.mu.Unlock()
	var seeds []string
	for _, s := range n.s.Join {
		if !seedAlive(s, alive) {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return
	}
	if _, err := n.ml.Join(seeds); err != nil && !n.stopped.Load() {
		n.m.joinFailures.Inc()
		n.log.Error(err, "Could not reach any seed in Options.Join; retrying", "seeds", seeds, "members", n.ml.NumMembers())
	}
}

// seedAlive reports whether every address seed resolves to is an alive
// member.
func seedAlive(seed string, alive map[string]bool) bool {
	host, port, err := net.SplitHostPort(seed)
	if err != nil {
		host, port = seed, strconv.Itoa(DefaultPort)
	}
	if net.ParseIP(host) != nil {
		return alive[net.JoinHostPort(host, port)]
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	addrs, err := net.DefaultResolver.LookupHost(ctx, host)
	if err != nil || len(addrs) == 0 {
		return false
	}
	for _, a := range addrs {
		if !alive[net.JoinHostPort(a, port)] {
			return false
		}
	}
	return true
}

func (n *node) close(leave bool) {
	if n.stopped.Swap(true) {
		return
	}
	close(n.stop)
	if leave {
		_ = n.ml.Leave(time.Second)
	}
	n.wg.Wait()
	_ = n.ml.Shutdown()
}

// envelope returns a message from this node.
func (n *node) envelope(k kind, b casp.Ballot, payload []byte) *envelope {
	return &envelope{
		Kind: k, From: n.s.Identity, Inc: n.inc, Addr: n.addr,
		Election: n.s.Name, Voters: n.s.voterHash, Ballot: b, Payload: payload,
	}
}

// sendMsg sends a protocol message as part of request id.
func (n *node) sendMsg(id uint64, m casp.Message) {
	payload, err := json.Marshal(m)
	if err != nil {
		n.log.Error(err, "Encoding a message", "kind", m.Kind)
		return
	}
	e := n.envelope(kindOf(m.Kind), m.Ballot, payload)
	e.ID = id
	n.sendTo(m.To, "", e)
}

// sendTo sends e to the member called name (at addr if known) without
// waiting; delivery is not guaranteed. Nothing is sent once the node stops.
func (n *node) sendTo(name, addr string, e *envelope) {
	n.sendToWhileClosing(name, addr, e, false)
}

// sendToWhileClosing is sendTo; with closing, it sends even when the node
// is stopping (close waits for it before memberlist shuts down).
func (n *node) sendToWhileClosing(name, addr string, e *envelope, closing bool) {
	if name == n.s.Identity && (addr == "" || addr == n.addr) {
		n.wg.Add(1)
		go func() { defer n.wg.Done(); n.receive(e) }()
		return
	}
	tos := n.members(name, addr)
	if len(tos) == 0 {
		n.m.sendFailures.Inc()
		n.log.V(4).Info("No address for member", "member", name)
		return
	}
	b, err := e.encode()
	if err != nil {
		n.log.Error(err, "Encoding a message", "kind", e.Kind)
		return
	}
	for _, to := range tos {
		n.send(name, to, e.Kind, b, closing)
	}
}

// send sends b to one address in the background.
func (n *node) send(name string, to *memberlist.Node, k kind, b []byte, closing bool) {
	select {
	case n.sendSlots <- struct{}{}:
	default:
		n.m.sendFailures.Inc()
		n.log.V(3).Info("Too many sends in flight; dropped a message", "to", name, "kind", k)
		return
	}
	if n.stopped.Load() && !closing {
		<-n.sendSlots
		return
	}
	n.m.sent.WithLabelValues(k.String()).Inc()
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer func() { <-n.sendSlots }()
		if err := n.ml.SendReliable(to, b); err != nil {
			n.m.sendFailures.Inc()
			n.log.V(3).Info("Sending failed", "to", name, "kind", k, "err", err)
		}
	}()
}

// members finds where to send to name (an identity): addr if given (the
// address a request came from); else both the address of name's current
// process in memberlist's view, if alive, and the address this node last
// heard name at (a message from it, or memberlist's news of it), when they
// differ. The other send fails harmlessly, and duplicates are harmless to
// the protocol.
func (n *node) members(name, addr string) []*memberlist.Node {
	var out []*memberlist.Node
	add := func(a string) {
		host, p, err := net.SplitHostPort(a)
		port, perr := strconv.Atoi(p)
		if err != nil || perr != nil || net.ParseIP(host) == nil {
			return
		}
		for _, o := range out {
			if o.Address() == a {
				return
			}
		}
		out = append(out, &memberlist.Node{Name: name, Addr: net.ParseIP(host), Port: uint16(port)})
	}
	if addr != "" {
		add(addr)
		return out
	}
	n.mu.Lock()
	known, heard := n.alive[name], n.addrs[name]
	n.mu.Unlock()
	if known != "" {
		add(known)
	}
	if heard != "" {
		add(heard)
	}
	return out
}

// broadcast sends e to every other live member (the current process of
// each identity). If first is one of them and later is positive, e goes
// to first at once and to the others later, even if the node stops
// meanwhile (a leader that releases and exits): close waits for them.
//
// If heir is set, first gets it instead of e (e with a hand-over); the
// others still get e later.
func (n *node) broadcast(e *envelope, first string, later time.Duration, heir *envelope) {
	n.mu.Lock()
	alive := make(map[string]string, len(n.alive))
	for name, a := range n.alive {
		alive[name] = a
	}
	n.mu.Unlock()
	delete(alive, n.s.Identity)
	a, ok := alive[first]
	if ok {
		if heir != nil {
			n.sendTo(first, a, heir)
		} else {
			n.sendTo(first, a, e)
		}
		delete(alive, first)
	}
	if ok && later > 0 {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			<-time.After(later)
			for name, a := range alive {
				n.sendToWhileClosing(name, a, e, true)
			}
		}()
		return
	}
	for name, a := range alive {
		n.sendTo(name, a, e)
	}
}

// incOf returns the incarnation of the current process of the alive
// member name, 0 if unknown.
func (n *node) incOf(name string) uint64 {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.incs[name]
}

// aliveNames returns the identities of the members memberlist sees alive,
// this node's included, each once.
func (n *node) aliveNames() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]string, 0, len(n.alive)+1)
	out = append(out, n.s.Identity)
	for name := range n.alive {
		if name != n.s.Identity {
			out = append(out, name)
		}
	}
	return out
}

// open starts a request: messages sent with sendMsg(id, ...) get their
// replies on the returned channel. done must be called when the caller
// stops listening.
func (n *node) open(size int) (id uint64, replies <-chan *envelope, done func()) {
	id = n.nextID.Add(1)
	ch := make(chan *envelope, size)
	n.mu.Lock()
	n.pending[id] = ch
	n.mu.Unlock()
	return id, ch, func() {
		n.mu.Lock()
		delete(n.pending, id)
		n.mu.Unlock()
	}
}

// receive handles one message from the network (or from this node itself).
func (n *node) receive(e *envelope) {
	n.m.received.WithLabelValues(e.Kind.String()).Inc()
	if e.Addr != "" && e.From != n.s.Identity && e.Election == n.s.Name {
		n.mu.Lock()
		if !n.supersededLocked(e.From, e.Inc) {
			n.addrs[e.From] = e.Addr
		}
		n.mu.Unlock()
	}
	if e.Election != n.s.Name {
		// memberlist's label keeps elections apart already; this is a
		// second line.
		n.m.refused.WithLabelValues("election").Inc()
		n.log.Error(nil, "Refused a message for another election", "from", e.From, "election", e.Election)
		return
	}
	if e.Kind.isReply() {
		if e.Inc != n.inc && e.Kind != kindRefused {
			return // for an earlier process under this name
		}
		n.mu.Lock()
		ch := n.pending[e.ID]
		n.mu.Unlock()
		if ch != nil {
			select {
			case ch <- e:
			default: // duplicates beyond what the caller can use
				n.log.V(3).Info("Reply channel full; dropped a reply", "from", e.From, "kind", e.Kind)
			}
		}
		return
	}
	if e.Voters != n.s.voterHash {
		n.m.refused.WithLabelValues("voters").Inc()
		n.log.Error(nil, "Refused a message from a candidate with a different voter list: every candidate must have the same Options.Voters", "from", e.From, "kind", e.Kind, "voters", n.s.Voters)
		if e.Kind != kindPush {
			r := n.envelope(kindRefused, casp.Ballot{}, []byte(strconv.Quote("voter list differs")))
			r.ID, r.Inc = e.ID, e.Inc
			n.sendTo(e.From, e.Addr, r)
		}
		return
	}
	if r := n.handle(e); r != nil {
		r.ID = e.ID
		r.Inc = e.Inc // the requester's incarnation: replies go to the process that asked
		r.From, r.Addr, r.Election, r.Voters = n.s.Identity, n.addr, n.s.Name, n.s.voterHash
		n.sendTo(e.From, e.Addr, r)
	}
}

// delegate adapts node to memberlist's delegates.
type delegate struct{ n *node }

// NodeMeta is this process's identity, incarnation and start time (see
// encodeMeta): the others learn them with its membership.
func (d delegate) NodeMeta(limit int) []byte {
	b := encodeMeta(process{id: d.n.s.Identity, inc: d.n.inc, started: d.n.started})
	if len(b) > limit {
		return nil // Options.Identity's length is checked against MetaMaxSize
	}
	return b
}

func (delegate) GetBroadcasts(int, int) [][]byte     { return nil }
func (delegate) LocalState(bool) []byte              { return nil }
func (delegate) MergeRemoteState(buf []byte, _ bool) {}

func (d delegate) NotifyMsg(b []byte) {
	if !d.n.ready.Load() {
		return
	}
	e, err := decodeEnvelope(b)
	if err != nil {
		d.n.m.refused.WithLabelValues("malformed").Inc()
		d.n.log.V(2).Info("Dropped a malformed message", "err", err)
		return
	}
	d.n.receive(e)
}

func (d delegate) NotifyJoin(m *memberlist.Node)   { d.n.memberChanged(m, true) }
func (d delegate) NotifyLeave(m *memberlist.Node)  { d.n.memberChanged(m, false) }
func (d delegate) NotifyUpdate(m *memberlist.Node) { d.n.memberChanged(m, true) }

// memberChanged runs inside memberlist's callbacks, where m may be read.
func (n *node) memberChanged(m *memberlist.Node, up bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	defer n.changedLocked()
	if m == nil || m.Addr == nil {
		return
	}
	defer n.rivalsLocked()
	if !up {
		p, ok := n.procs[m.Name]
		if ok && n.s.voter && p.id == n.s.Identity && p.inc != n.inc {
			n.removed[m.Name] = removal{p: p, until: time.Now().Add(n.twinAfter(len(n.procs)))}
		}
		delete(n.procs, m.Name)
		if ok {
			n.currentLocked(p.id)
		}
		n.log.V(3).Info("Member gone", "member", m.Name)
		return
	}
	p, ok := decodeMeta(m.Name, m.Meta)
	if !ok {
		n.log.V(1).Info("Ignored a member whose metadata names no identity (another program, or a newer version of this one)", "member", m.Name)
		return
	}
	p.addr = net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
	if was, ok := n.procs[m.Name]; ok && was.id != p.id {
		delete(n.procs, m.Name)
		n.currentLocked(was.id)
	}
	if _, ok := n.procs[m.Name]; !ok {
		n.log.V(3).Info("Member alive", "member", m.Name, "addr", p.addr)
	}
	n.procs[m.Name] = p
	delete(n.removed, m.Name) // re-admitted: a live rival again
	if cur := n.currentLocked(p.id); cur == m.Name && p.id != n.s.Identity {
		n.addrs[p.id] = p.addr
	}
	for name, o := range n.procs {
		if name != m.Name && o.id == p.id {
			n.twinCheckLocked(name, m.Name)
		}
	}
}

// currentLocked sets alive and incs for identity id from procs, and
// returns the memberlist name of its current process ("" if none is
// alive).
func (n *node) currentLocked(id string) string {
	curName, cur := "", process{}
	for name, p := range n.procs {
		if p.id != id {
			continue
		}
		if id == n.s.Identity && p.inc == n.inc {
			curName, cur = name, p
			break
		}
		if curName == "" || p.after(cur) {
			curName, cur = name, p
		}
	}
	if curName == "" {
		delete(n.alive, id)
		delete(n.incs, id)
		return ""
	}
	n.alive[id], n.incs[id] = cur.addr, cur.inc
	return curName
}

// removal is a process of this voter's identity that memberlist removed
// (declared dead, or left). memberlist also declares a live process dead
// when it misses probes (a loaded machine, a pause, a partition), and
// that process, told so by gossip or the next push-pull, refutes it and
// is re-admitted; so a removed process stays a rival until it is proven
// gone, or until twinAfter (twice the time memberlist takes to declare a
// crashed member dead, far longer than a refutation takes) after its
// removal without being re-admitted. See "Two live processes with one
// identity" in docs/backends/gossip.md.
type removal struct {
	p     process
	until time.Time
}

// changedLocked wakes those waiting for a change of membership or rivals.
func (n *node) changedLocked() {
	close(n.changed)
	n.changed = make(chan struct{})
}

// rivalsLocked counts this voter's rivals (see node.rivals), forgets
// removed ones that are gone or whose time is up, and starts a probe of
// each not probed yet. A rival at this process's own address is gone
// already: two live processes cannot listen on one address.
func (n *node) rivalsLocked() {
	if !n.s.voter {
		return
	}
	var count int32
	rival := func(name string, p process) bool {
		if p.id != n.s.Identity || p.inc == n.inc || n.gone[name] {
			return false
		}
		if n.ready.Load() && p.addr == n.addr { // addr is set before ready
			n.gone[name] = true
			return false
		}
		count++
		if !n.probing[name] && !n.stopped.Load() {
			n.probing[name] = true
			n.wg.Add(1)
			go n.probe(name)
		}
		return true
	}
	for name, p := range n.procs {
		rival(name, p)
	}
	now := time.Now()
	for name, r := range n.removed {
		if !now.Before(r.until) || !rival(name, r.p) {
			delete(n.removed, name)
			delete(n.gone, name)
		}
	}
	if count > 0 && n.rivals.Load() == 0 {
		n.rivalGen.Add(1)
		n.log.Error(nil, "Another live process claims this voter's identity: this one does not answer as its acceptor until that one is gone (a restart's predecessor goes at once; two live processes with one Options.Identity are a misconfiguration)",
			"rivals", count)
	}
	n.rivals.Store(count)
}

// probe dials the rival memberlist calls name (see rivalsLocked) now,
// then more and more rarely and whenever membership changes, until it is
// no rival: its address refused the connection (nothing listens there:
// a crashed or closed process's port refuses at once, so that a restart
// is not held up by the failure detector; any other outcome, connected,
// timed out or unreachable, proves nothing), or memberlist removed it and
// its removal's time is up.
func (n *node) probe(name string) {
	defer n.wg.Done()
	wait := 50 * time.Millisecond
	for {
		n.mu.Lock()
		p, until, ok := n.rivalLocked(name)
		changed := n.changed
		if !ok {
			delete(n.probing, name)
		}
		n.mu.Unlock()
		if !ok {
			return
		}
		if n.refused(p.addr) {
			n.markGone(name, p)
			continue
		}
		next := wait
		if !until.IsZero() {
			next = min(wait, time.Until(until))
		}
		if next <= 0 {
			n.mu.Lock()
			n.rivalsLocked() // forgets it
			n.changedLocked()
			n.mu.Unlock()
			continue
		}
		select {
		case <-n.stop:
			return
		case <-changed: // memberlist removed it, say: dial again now
		case <-time.After(next):
			wait = min(2*wait, 5*time.Second)
		}
	}
}

// proveGone dials every rival once, now, and counts those whose address
// refuses as gone (their probes would find it a moment later).
func (n *node) proveGone() {
	n.mu.Lock()
	rivals := map[string]process{}
	for name := range n.probing {
		if p, _, ok := n.rivalLocked(name); ok {
			rivals[name] = p
		}
	}
	n.mu.Unlock()
	for name, p := range rivals {
		if n.refused(p.addr) {
			n.markGone(name, p)
		}
	}
}

// markGone counts the rival memberlist calls name, at p, as gone: its
// address refused a connection.
func (n *node) markGone(name string, p process) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if _, _, ok := n.rivalLocked(name); !ok {
		return // gone already, or forgotten
	}
	n.gone[name] = true
	n.rivalsLocked()
	n.changedLocked()
	n.log.V(1).Info("A process of this identity is gone: its address refuses connections", "member", name, "addr", p.addr)
}

// rivalLocked returns the rival memberlist calls name, if it still is
// one, and the end of its removal's time if memberlist removed it (zero
// while memberlist sees it alive).
func (n *node) rivalLocked(name string) (process, time.Time, bool) {
	if n.gone[name] {
		return process{}, time.Time{}, false
	}
	if p, ok := n.procs[name]; ok {
		return p, time.Time{}, true
	}
	r, ok := n.removed[name]
	return r.p, r.until, ok
}

// refused reports whether a stream connection to addr, through
// memberlist's transport (so that a test network's faults apply), is
// refused: nothing listens there.
func (n *node) refused(addr string) bool {
	c, err := n.tr.DialTimeout(addr, n.dialWait)
	if err == nil {
		_ = c.Close()
		return false
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// supersededLocked reports whether inc is a process of identity id that
// memberlist sees alive but that is not id's current process: a message
// from it (a predecessor's, delivered late; a twin's) does not redirect
// messages to id.
func (n *node) supersededLocked(id string, inc uint64) bool {
	if cur, ok := n.incs[id]; !ok || cur == inc {
		return false
	}
	for _, p := range n.procs {
		if p.id == id && p.inc == inc {
			return true
		}
	}
	return false
}

// twinCheckLocked checks, twinAfter from now, whether the processes
// memberlist calls a and b, of one identity, are both still alive. A
// restarted process's predecessor is declared dead by then; two live
// processes with one identity are a misconfiguration, which it reports.
// Until then, and after, messages for the identity go to the process
// started last: a restart cannot be told from a twin sooner.
func (n *node) twinCheckLocked(a, b string) {
	if b < a {
		a, b = b, a
	}
	key := [2]string{a, b}
	if n.twins[key] {
		return
	}
	n.twins[key] = true
	time.AfterFunc(n.twinAfter(len(n.procs)), func() {
		if n.stopped.Load() {
			return
		}
		n.mu.Lock()
		pa, oka := n.procs[a]
		pb, okb := n.procs[b]
		if !oka || !okb {
			delete(n.twins, key) // one of them is gone: a restart, not a twin
			n.mu.Unlock()
			return
		}
		cur := n.alive[pa.id]
		n.mu.Unlock()
		n.m.refused.WithLabelValues("duplicate_name").Inc()
		n.log.Error(nil, "Two live processes claim one identity: every candidate needs its own Options.Identity; messages for it go to the one started last",
			"member", pa.id, "addresses", []string{pa.addr, pb.addr}, "current", cur)
	})
}

func (d delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.n.m.refused.WithLabelValues("duplicate_name").Inc()
	d.n.log.Error(nil, "Two members claim one memberlist node name (an identity and a process incarnation): the newcomer is not admitted",
		"name", existing.Name, "existing", existing.Address(), "other", other.Address())
}

// mlLog turns memberlist's log lines ("[ERR] memberlist: ...") into
// structured logs, and says plainly when a peer's key differs.
type mlLog struct{ n *node }

func (w *mlLog) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level, msg, _ := strings.Cut(line, " ")
	msg = strings.TrimPrefix(msg, "memberlist: ")
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "decrypt") || strings.Contains(lower, "no installed keys") || strings.Contains(lower, "encryption is configured but remote state is not encrypted"):
		w.n.m.refused.WithLabelValues("key").Inc()
		w.n.log.Error(nil, "Refused traffic this election's key cannot decrypt: a peer has a different Options.SecretKey (or none)", "detail", msg)
	case level == "[ERR]" || level == "[WARN]":
		// Mostly a member that did not answer in time: the failure
		// detector's business, which it reports as membership changes.
		w.n.log.V(1).Info("memberlist: "+msg, "level", strings.Trim(level, "[]"))
	default:
		w.n.log.V(4).Info("memberlist: " + msg)
	}
	return len(p), nil
}

// numMembers is how many identities memberlist sees alive, this one
// included: a restarted process and its crashed predecessor, not yet
// declared dead, count once.
func (n *node) numMembers() int {
	return len(n.aliveNames())
}

// waitMembers waits until at least want members are alive or ctx ends.
func (n *node) waitMembers(ctx context.Context, want int) error {
	for {
		n.mu.Lock()
		ch := n.changed
		n.mu.Unlock()
		if n.numMembers() >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d members after waiting: %w", n.numMembers(), want, ctx.Err())
		case <-ch:
		}
	}
}
