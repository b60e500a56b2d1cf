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

// transport is this process's membership and messaging: memberlist, the
// envelope layer, request ids and reply routing.
type transport struct {
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
	// cameAlive, if set (before ready), is told on a goroutine of its own
	// of another identity whose process memberlist now shows alive at
	// addr: joined, moved, or re-admitted after memberlist declared it
	// dead.
	cameAlive func(id, addr string)
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

// newTransport creates the memberlist (listening, not yet joined).
func newTransport(s *settings, logger logr.Logger, m *metrics) (*transport, error) {
	t := &transport{
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
	t.nextID.Store(randUint64() >> 1)

	c, _ := s.Preset.config()
	// A node name per process, not per identity: memberlist admits a
	// name at a new address only once the old one has left or been dead
	// for DeadNodeReclaimTime, and a restarted process (a pod's new IP,
	// a new port) must vote at once. The identity travels in NodeMeta.
	c.Name = fmt.Sprintf("%s#%016x", s.Identity, t.inc)
	c.Label = s.Name
	c.Delegate = delegate{t}
	c.Conflict = delegate{t}
	c.Events = delegate{t}
	c.Logger = log.New(&mlLog{t: t}, "", 0)
	if len(s.key) > 0 {
		c.SecretKey = s.key
	}
	if s.Transport != nil {
		c.Transport = s.Transport
	} else {
		nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{
			BindAddrs: []string{s.bindHost},
			BindPort:  s.bindPort,
			Logger:    c.Logger,
		})
		if err != nil {
			return nil, fmt.Errorf("gossip: Options.Bind %s: %w", net.JoinHostPort(s.bindHost, strconv.Itoa(s.bindPort)), err)
		}
		c.Transport = nt
		c.BindAddr, c.BindPort = s.bindHost, nt.GetAutoBindPort()
		c.AdvertisePort = c.BindPort
	}
	if s.advHost != "" {
		c.AdvertiseAddr, c.AdvertisePort = s.advHost, s.advPort
	}
	if s.Memberlist != nil {
		s.Memberlist(c)
	}
	t.twinAfter = func(members int) time.Duration { return 2 * deadAfter(c, members) }
	t.tr, t.dialWait = c.Transport, max(c.ProbeTimeout, 100*time.Millisecond)
	ml, err := memberlist.Create(c)
	if err != nil {
		_ = c.Transport.Shutdown()
		return nil, fmt.Errorf("gossip: starting memberlist for %q: %w", s.Identity, err)
	}
	t.ml = ml
	self := ml.LocalNode()
	t.addr = net.JoinHostPort(self.Addr.String(), strconv.Itoa(int(self.Port)))
	return t, nil
}

// start joins the seeds and keeps re-joining them.
func (t *transport) start() {
	_, every := t.s.Preset.config()
	if t.s.RejoinInterval > 0 {
		every = t.s.RejoinInterval
	}
	t.join()
	if len(t.s.Join) == 0 {
		return
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-t.stop:
				return
			case <-tick.C:
				t.join()
			}
		}
	}()
}

// join contacts the seeds that are not alive members (nor this node).
// memberlist never merges two halves of a healed partition by itself, so
// this runs periodically; a seed already in the cluster costs nothing.
func (t *transport) join() {
	alive := map[string]bool{t.addr: true}
	t.mu.Lock()
	for _, p := range t.procs {
		alive[p.addr] = true
	}
	t.mu.Unlock()
	var seeds []string
	for _, s := range t.s.Join {
		if !seedAlive(s, alive) {
			seeds = append(seeds, s)
		}
	}
	if len(seeds) == 0 {
		return
	}
	if _, err := t.ml.Join(seeds); err != nil && !t.stopped.Load() {
		t.m.joinFailures.Inc()
		t.log.Error(err, "Could not reach any seed in Options.Join; retrying", "seeds", seeds, "members", t.ml.NumMembers())
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

func (t *transport) close(leave bool) {
	if t.stopped.Swap(true) {
		return
	}
	close(t.stop)
	if leave {
		_ = t.ml.Leave(time.Second)
	}
	t.wg.Wait()
	_ = t.ml.Shutdown()
}

// envelope returns a message from this node.
func (t *transport) envelope(k kind, b casp.Ballot, payload []byte) *envelope {
	return &envelope{
		Kind: k, From: t.s.Identity, Inc: t.inc, Addr: t.addr,
		Election: t.s.Name, Voters: t.s.voterHash, Ballot: b, Payload: payload,
	}
}

// sendMsg sends a protocol message as part of request id.
func (t *transport) sendMsg(id uint64, m casp.Message) {
	payload, err := json.Marshal(m)
	if err != nil {
		t.log.Error(err, "Encoding a message", "kind", m.Kind)
		return
	}
	e := t.envelope(kindOf(m.Kind), m.Ballot, payload)
	e.ID = id
	t.sendTo(m.To, "", e)
}

// sendTo sends e to the member called name (at addr if known) without
// waiting; delivery is not guaranteed. Nothing is sent once the transport stops.
func (t *transport) sendTo(name, addr string, e *envelope) {
	t.sendToWhileClosing(name, addr, e, false)
}

// sendToWhileClosing is sendTo; with closing, it sends even when the transport
// is stopping (close waits for it before memberlist shuts down).
func (t *transport) sendToWhileClosing(name, addr string, e *envelope, closing bool) {
	if name == t.s.Identity && (addr == "" || addr == t.addr) {
		t.wg.Add(1)
		go func() { defer t.wg.Done(); t.receive(e) }()
		return
	}
	tos := t.members(name, addr)
	if len(tos) == 0 {
		t.m.sendFailures.Inc()
		t.log.V(4).Info("No address for member", "member", name)
		return
	}
	b, err := e.encode()
	if err != nil {
		t.log.Error(err, "Encoding a message", "kind", e.Kind)
		return
	}
	for _, to := range tos {
		t.send(name, to, e.Kind, b, closing)
	}
}

// send sends b to one address in the background.
func (t *transport) send(name string, to *memberlist.Node, k kind, b []byte, closing bool) {
	select {
	case t.sendSlots <- struct{}{}:
	default:
		t.m.sendFailures.Inc()
		t.log.V(3).Info("Too many sends in flight; dropped a message", "to", name, "kind", k)
		return
	}
	if t.stopped.Load() && !closing {
		<-t.sendSlots
		return
	}
	t.m.sent.WithLabelValues(k.String()).Inc()
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		defer func() { <-t.sendSlots }()
		if err := t.ml.SendReliable(to, b); err != nil {
			t.m.sendFailures.Inc()
			t.log.V(3).Info("Sending failed", "to", name, "kind", k, "err", err)
		}
	}()
}

// members finds where to send to name (an identity): addr if given (the
// address a request came from); else both the address of name's current
// process in memberlist's view, if alive, and the address this node last
// heard name at (a message from it, or memberlist's news of it), when they
// differ. The other send fails harmlessly, and duplicates are harmless to
// the protocol.
func (t *transport) members(name, addr string) []*memberlist.Node {
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
	t.mu.Lock()
	known, heard := t.alive[name], t.addrs[name]
	t.mu.Unlock()
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
// to first at once and to the others later, even if the transport stops
// meanwhile (a leader that releases and exits): close waits for them.
//
// If heir is set, first gets it instead of e (e with a hand-over); the
// others still get e later.
func (t *transport) broadcast(e *envelope, first string, later time.Duration, heir *envelope) {
	t.mu.Lock()
	alive := make(map[string]string, len(t.alive))
	for name, a := range t.alive {
		alive[name] = a
	}
	t.mu.Unlock()
	delete(alive, t.s.Identity)
	a, ok := alive[first]
	if ok {
		if heir != nil {
			t.sendTo(first, a, heir)
		} else {
			t.sendTo(first, a, e)
		}
		delete(alive, first)
	}
	if ok && later > 0 {
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			<-time.After(later)
			for name, a := range alive {
				t.sendToWhileClosing(name, a, e, true)
			}
		}()
		return
	}
	for name, a := range alive {
		t.sendTo(name, a, e)
	}
}

// incOf returns the incarnation of the current process of the alive
// member name, 0 if unknown.
func (t *transport) incOf(name string) uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.incs[name]
}

// aliveNames returns the identities of the members memberlist sees alive,
// this node's included, each once.
func (t *transport) aliveNames() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]string, 0, len(t.alive)+1)
	out = append(out, t.s.Identity)
	for name := range t.alive {
		if name != t.s.Identity {
			out = append(out, name)
		}
	}
	return out
}

// open starts a request: messages sent with sendMsg(id, ...) get their
// replies on the returned channel. done must be called when the caller
// stops listening.
func (t *transport) open(size int) (id uint64, replies <-chan *envelope, done func()) {
	id = t.nextID.Add(1)
	ch := make(chan *envelope, size)
	t.mu.Lock()
	t.pending[id] = ch
	t.mu.Unlock()
	return id, ch, func() {
		t.mu.Lock()
		delete(t.pending, id)
		t.mu.Unlock()
	}
}

// receive handles one message from the network (or from this node itself).
func (t *transport) receive(e *envelope) {
	t.m.received.WithLabelValues(e.Kind.String()).Inc()
	if e.Addr != "" && e.From != t.s.Identity && e.Election == t.s.Name {
		t.mu.Lock()
		if !t.supersededLocked(e.From, e.Inc) {
			t.addrs[e.From] = e.Addr
		}
		t.mu.Unlock()
	}
	if e.Election != t.s.Name {
		// memberlist's label keeps elections apart already; this is a
		// second line.
		t.m.refused.WithLabelValues("election").Inc()
		t.log.Error(nil, "Refused a message for another election", "from", e.From, "election", e.Election)
		return
	}
	if e.Kind.isReply() {
		if e.Inc != t.inc && e.Kind != kindRefused {
			return // for an earlier process under this name
		}
		t.mu.Lock()
		ch := t.pending[e.ID]
		t.mu.Unlock()
		if ch != nil {
			select {
			case ch <- e:
			default: // duplicates beyond what the caller can use
				t.log.V(3).Info("Reply channel full; dropped a reply", "from", e.From, "kind", e.Kind)
			}
		}
		return
	}
	if e.Voters != t.s.voterHash {
		t.m.refused.WithLabelValues("voters").Inc()
		t.log.Error(nil, "Refused a message from a candidate with a different voter list: every candidate must have the same Options.Voters", "from", e.From, "kind", e.Kind, "voters", t.s.Voters)
		if e.Kind != kindPush {
			r := t.envelope(kindRefused, casp.Ballot{}, []byte(strconv.Quote("voter list differs")))
			r.ID, r.Inc = e.ID, e.Inc
			t.sendTo(e.From, e.Addr, r)
		}
		return
	}
	if r := t.handle(e); r != nil {
		r.ID = e.ID
		r.Inc = e.Inc // the requester's incarnation: replies go to the process that asked
		r.From, r.Addr, r.Election, r.Voters = t.s.Identity, t.addr, t.s.Name, t.s.voterHash
		t.sendTo(e.From, e.Addr, r)
	}
}

// delegate adapts transport to memberlist's delegates.
type delegate struct{ t *transport }

// NodeMeta is this process's identity, incarnation and start time (see
// encodeMeta): the others learn them with its membership.
func (d delegate) NodeMeta(limit int) []byte {
	b := encodeMeta(process{id: d.t.s.Identity, inc: d.t.inc, started: d.t.started})
	if len(b) > limit {
		return nil // Options.Identity's length is checked against MetaMaxSize
	}
	return b
}

func (delegate) GetBroadcasts(int, int) [][]byte     { return nil }
func (delegate) LocalState(bool) []byte              { return nil }
func (delegate) MergeRemoteState(buf []byte, _ bool) {}

func (d delegate) NotifyMsg(b []byte) {
	if !d.t.ready.Load() {
		return
	}
	e, err := decodeEnvelope(b)
	if err != nil {
		d.t.m.refused.WithLabelValues("malformed").Inc()
		d.t.log.V(2).Info("Dropped a malformed message", "err", err)
		return
	}
	d.t.receive(e)
}

func (d delegate) NotifyJoin(m *memberlist.Node)   { d.t.memberChanged(m, true) }
func (d delegate) NotifyLeave(m *memberlist.Node)  { d.t.memberChanged(m, false) }
func (d delegate) NotifyUpdate(m *memberlist.Node) { d.t.memberChanged(m, true) }

// memberChanged runs inside memberlist's callbacks, where m may be read.
func (t *transport) memberChanged(m *memberlist.Node, up bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	defer t.changedLocked()
	if m == nil || m.Addr == nil {
		return
	}
	defer t.rivalsLocked()
	if !up {
		p, ok := t.procs[m.Name]
		if ok && t.s.voter && p.id == t.s.Identity && p.inc != t.inc {
			t.removed[m.Name] = removal{p: p, until: time.Now().Add(t.twinAfter(len(t.procs)))}
		}
		delete(t.procs, m.Name)
		if ok {
			t.currentLocked(p.id)
		}
		t.log.V(3).Info("Member gone", "member", m.Name)
		return
	}
	p, ok := decodeMeta(m.Name, m.Meta)
	if !ok {
		t.log.V(1).Info("Ignored a member whose metadata names no identity (another program, or a newer version of this one)", "member", m.Name)
		return
	}
	p.addr = net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))
	if was, ok := t.procs[m.Name]; ok && was.id != p.id {
		delete(t.procs, m.Name)
		t.currentLocked(was.id)
	}
	if _, ok := t.procs[m.Name]; !ok {
		t.log.V(3).Info("Member alive", "member", m.Name, "addr", p.addr)
	}
	t.procs[m.Name] = p
	delete(t.removed, m.Name) // re-admitted: a live rival again
	was := t.alive[p.id]
	if cur := t.currentLocked(p.id); cur == m.Name && p.id != t.s.Identity {
		t.addrs[p.id] = p.addr
		// ready before cameAlive: New sets it before ready.
		if t.ready.Load() && !t.stopped.Load() && t.cameAlive != nil && t.alive[p.id] != was {
			id, addr, f := p.id, t.alive[p.id], t.cameAlive
			t.wg.Add(1)
			go func() { defer t.wg.Done(); f(id, addr) }()
		}
	}
	for name, o := range t.procs {
		if name != m.Name && o.id == p.id {
			t.twinCheckLocked(name, m.Name)
		}
	}
}

// currentLocked sets alive and incs for identity id from procs, and
// returns the memberlist name of its current process ("" if none is
// alive).
func (t *transport) currentLocked(id string) string {
	curName, cur := "", process{}
	for name, p := range t.procs {
		if p.id != id {
			continue
		}
		if id == t.s.Identity && p.inc == t.inc {
			curName, cur = name, p
			break
		}
		if curName == "" || p.after(cur) {
			curName, cur = name, p
		}
	}
	if curName == "" {
		delete(t.alive, id)
		delete(t.incs, id)
		return ""
	}
	t.alive[id], t.incs[id] = cur.addr, cur.inc
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
func (t *transport) changedLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// rivalsLocked counts this voter's rivals (see transport.rivals), forgets
// removed ones that are gone or whose time is up, and starts a probe of
// each not probed yet. A rival at this process's own address is gone
// already: two live processes cannot listen on one address.
func (t *transport) rivalsLocked() {
	if !t.s.voter {
		return
	}
	var count int32
	rival := func(name string, p process) bool {
		if p.id != t.s.Identity || p.inc == t.inc || t.gone[name] {
			return false
		}
		if t.ready.Load() && p.addr == t.addr { // addr is set before ready
			t.gone[name] = true
			return false
		}
		count++
		if !t.probing[name] && !t.stopped.Load() {
			t.probing[name] = true
			t.wg.Add(1)
			go t.probe(name)
		}
		return true
	}
	for name, p := range t.procs {
		rival(name, p)
	}
	now := time.Now()
	for name, r := range t.removed {
		if !now.Before(r.until) || !rival(name, r.p) {
			delete(t.removed, name)
			delete(t.gone, name)
		}
	}
	if count > 0 && t.rivals.Load() == 0 {
		t.rivalGen.Add(1)
		t.log.Error(nil, "Another live process claims this voter's identity: this one does not answer as its acceptor until that one is gone (a restart's predecessor goes at once; two live processes with one Options.Identity are a misconfiguration)",
			"rivals", count)
	}
	t.rivals.Store(count)
}

// probe dials the rival memberlist calls name (see rivalsLocked) now,
// then more and more rarely and whenever membership changes, until it is
// no rival: its address refused the connection (nothing listens there:
// a crashed or closed process's port refuses at once, so that a restart
// is not held up by the failure detector; any other outcome, connected,
// timed out or unreachable, proves nothing), or memberlist removed it and
// its removal's time is up.
func (t *transport) probe(name string) {
	defer t.wg.Done()
	wait := 50 * time.Millisecond
	for {
		t.mu.Lock()
		p, until, ok := t.rivalLocked(name)
		changed := t.changed
		if !ok {
			delete(t.probing, name)
		}
		t.mu.Unlock()
		if !ok {
			return
		}
		if t.refused(p.addr) {
			t.markGone(name, p)
			continue
		}
		next := wait
		if !until.IsZero() {
			next = min(wait, time.Until(until))
		}
		if next <= 0 {
			t.mu.Lock()
			t.rivalsLocked() // forgets it
			t.changedLocked()
			t.mu.Unlock()
			continue
		}
		select {
		case <-t.stop:
			return
		case <-changed: // memberlist removed it, say: dial again now
		case <-time.After(next):
			wait = min(2*wait, 5*time.Second)
		}
	}
}

// proveGone dials every rival once, now, and counts those whose address
// refuses as gone (their probes would find it a moment later).
func (t *transport) proveGone() {
	t.mu.Lock()
	rivals := map[string]process{}
	for name := range t.probing {
		if p, _, ok := t.rivalLocked(name); ok {
			rivals[name] = p
		}
	}
	t.mu.Unlock()
	for name, p := range rivals {
		if t.refused(p.addr) {
			t.markGone(name, p)
		}
	}
}

// markGone counts the rival memberlist calls name, at p, as gone: its
// address refused a connection.
func (t *transport) markGone(name string, p process) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, _, ok := t.rivalLocked(name); !ok {
		return // gone already, or forgotten
	}
	t.gone[name] = true
	t.rivalsLocked()
	t.changedLocked()
	t.log.V(1).Info("A process of this identity is gone: its address refuses connections", "member", name, "addr", p.addr)
}

// rivalLocked returns the rival memberlist calls name, if it still is
// one, and the end of its removal's time if memberlist removed it (zero
// while memberlist sees it alive).
func (t *transport) rivalLocked(name string) (process, time.Time, bool) {
	if t.gone[name] {
		return process{}, time.Time{}, false
	}
	if p, ok := t.procs[name]; ok {
		return p, time.Time{}, true
	}
	r, ok := t.removed[name]
	return r.p, r.until, ok
}

// refused reports whether a stream connection to addr, through
// memberlist's transport (so that a test network's faults apply), is
// refused: nothing listens there.
func (t *transport) refused(addr string) bool {
	c, err := t.tr.DialTimeout(addr, t.dialWait)
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
func (t *transport) supersededLocked(id string, inc uint64) bool {
	if cur, ok := t.incs[id]; !ok || cur == inc {
		return false
	}
	for _, p := range t.procs {
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
func (t *transport) twinCheckLocked(a, b string) {
	if b < a {
		a, b = b, a
	}
	key := [2]string{a, b}
	if t.twins[key] {
		return
	}
	t.twins[key] = true
	time.AfterFunc(t.twinAfter(len(t.procs)), func() {
		if t.stopped.Load() {
			return
		}
		t.mu.Lock()
		pa, oka := t.procs[a]
		pb, okb := t.procs[b]
		if !oka || !okb {
			delete(t.twins, key) // one of them is gone: a restart, not a twin
			t.mu.Unlock()
			return
		}
		cur := t.alive[pa.id]
		t.mu.Unlock()
		t.m.refused.WithLabelValues("duplicate_name").Inc()
		t.log.Error(nil, "Two live processes claim one identity: every candidate needs its own Options.Identity; messages for it go to the one started last",
			"member", pa.id, "addresses", []string{pa.addr, pb.addr}, "current", cur)
	})
}

func (d delegate) NotifyConflict(existing, other *memberlist.Node) {
	d.t.m.refused.WithLabelValues("duplicate_name").Inc()
	d.t.log.Error(nil, "Two members claim one memberlist node name (an identity and a process incarnation): the newcomer is not admitted",
		"name", existing.Name, "existing", existing.Address(), "other", other.Address())
}

// mlLog turns memberlist's log lines ("[ERR] memberlist: ...") into
// structured logs, and says plainly when a peer's key differs.
type mlLog struct{ t *transport }

func (w *mlLog) Write(p []byte) (int, error) {
	line := string(bytes.TrimSpace(p))
	level, msg, _ := strings.Cut(line, " ")
	msg = strings.TrimPrefix(msg, "memberlist: ")
	lower := strings.ToLower(msg)
	switch {
	case strings.Contains(lower, "decrypt") || strings.Contains(lower, "no installed keys") || strings.Contains(lower, "encryption is configured but remote state is not encrypted"):
		w.t.m.refused.WithLabelValues("key").Inc()
		w.t.log.Error(nil, "Refused traffic this election's key cannot decrypt: a peer has a different Options.SecretKey (or none)", "detail", msg)
	case level == "[ERR]" || level == "[WARN]":
		// Mostly a member that did not answer in time: the failure
		// detector's business, which it reports as membership changes.
		w.t.log.V(1).Info("memberlist: "+msg, "level", strings.Trim(level, "[]"))
	default:
		w.t.log.V(4).Info("memberlist: " + msg)
	}
	return len(p), nil
}

// numMembers is how many identities memberlist sees alive, this one
// included: a restarted process and its crashed predecessor, not yet
// declared dead, count once.
func (t *transport) numMembers() int {
	return len(t.aliveNames())
}

// waitMembers waits until at least want members are alive or ctx ends.
func (t *transport) waitMembers(ctx context.Context, want int) error {
	for {
		t.mu.Lock()
		ch := t.changed
		t.mu.Unlock()
		if t.numMembers() >= want {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d members after waiting: %w", t.numMembers(), want, ctx.Err())
		case <-ch:
		}
	}
}
