package locktest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"

	"github.com/b3df926d/leaderelection/internal/hold"
	"github.com/b3df926d/leaderelection/internal/notify"
	"github.com/b3df926d/leaderelection/lock"
)

// MemoryStore is the in-memory backend: one record in memory, shared by the
// locks it hands out. It is for tests (and examples): it proves nothing about
// a real store, but it implements the whole lock contract, including
// lock.Watcher, and its fault injection (SetFault, Block, SetRaw) lets tests
// drive the elector through a failing, hanging or corrupted store.
type MemoryStore struct {
	name string
	hub  notify.Hub

	mu      sync.Mutex
	raw     []byte // nil: no record
	version uint64
	fault   func(op string) error
	gate    hold.Gate // held: calls block until it is resumed or ctx ends
	blocked int       // calls waiting at the gate
	// blockedOps counts them by operation ("get", "create", "update").
	blockedOps map[string]int
}

// NewMemoryStore returns an empty store; name appears in errors and Describe.
func NewMemoryStore(name string) *MemoryStore {
	return &MemoryStore{name: name}
}

// Lock returns a lock on the store for the candidate identity.
func (s *MemoryStore) Lock(identity string) *MemoryLock {
	return &MemoryLock{store: s, identity: identity}
}

// SetFault makes every later call run f first with the operation name ("get",
// "create", "update"); a non-nil result is returned instead of doing the
// operation. A nil f removes the fault.
func (s *MemoryStore) SetFault(f func(op string) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fault = f
}

// Block makes every later call wait until the returned function is called or
// the call's context ends, like a store that stopped answering.
func (s *MemoryStore) Block() (unblock func()) {
	s.mu.Lock() // calls past the gate hold s.mu: none is left running
	defer s.mu.Unlock()
	return s.gate.Hold()
}

// Blocked reports how many calls are waiting on a Block.
func (s *MemoryStore) Blocked() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blocked
}

// BlockedIn reports how many calls of the operation op ("get", "create",
// "update") are waiting on a Block, so that a test can tell which call
// hangs, not only that one does.
func (s *MemoryStore) BlockedIn(op string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blockedOps[op]
}

// SetRaw stores raw bytes as the record, bypassing encoding, as a corrupting
// writer would. Watchers are notified.
func (s *MemoryStore) SetRaw(raw []byte) {
	s.mu.Lock()
	s.raw = append([]byte(nil), raw...)
	s.version++
	s.mu.Unlock()
	s.hub.Notify()
}

// Delete removes the record, as an operator deleting the store object
// would. Watchers are notified.
func (s *MemoryStore) Delete() {
	s.mu.Lock()
	s.raw = nil
	s.version++
	s.mu.Unlock()
	s.hub.Notify()
}

// SignalAround makes each write signal every watch of the store (the
// channels Changes returned) through around, as notify.Hub.SignalAround:
// around gets the watch and a function that sends its signal, which it
// must call once, before the write returns; nil restores the plain
// signal. It must not call the store. The elector's tests use it to mark
// a candidate awake at the moment a signal is sent to it.
func (s *MemoryStore) SignalAround(around func(watch <-chan struct{}, signal func())) {
	s.hub.SignalAround(around)
}

// Raw returns the stored bytes (nil if no record).
func (s *MemoryStore) Raw() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]byte(nil), s.raw...)
}

// enter waits out a Block and applies a fault; it returns with s.mu held on
// success.
func (s *MemoryStore) enter(ctx context.Context, op string) error {
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("memory://%s: %s: %w", s.name, op, err)
		}
		s.mu.Lock()
		if !s.gate.Held() {
			break
		}
		s.blocked++
		if s.blockedOps == nil {
			s.blockedOps = map[string]int{}
		}
		s.blockedOps[op]++
		s.mu.Unlock()
		_ = s.gate.Wait(ctx) // its error is ctx's, returned above
		s.mu.Lock()
		s.blocked--
		s.blockedOps[op]--
		s.mu.Unlock()
	}
	if s.fault != nil {
		if err := s.fault(op); err != nil {
			s.mu.Unlock()
			return err
		}
	}
	return nil
}

// MemoryLock is one candidate's handle on a MemoryStore.
type MemoryLock struct {
	store    *MemoryStore
	identity string
	cut      hold.Gate // held: this handle's calls hang, as if cut off from the store

	mu      sync.Mutex
	version uint64 // last version seen or written; 0: none
	// readNever: the last Get found that no record was ever written; a
	// Create then succeeds only if that is still so.
	readNever bool
}

var (
	_ lock.Interface = (*MemoryLock)(nil)
	_ lock.Watcher   = (*MemoryLock)(nil)
)

// Get returns the stored record and remembers its version.
func (l *MemoryLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	s := l.store
	if err := l.enter(ctx, "get"); err != nil {
		return nil, nil, err
	}
	raw, version := append([]byte(nil), s.raw...), s.version
	s.mu.Unlock()
	l.mu.Lock()
	l.readNever = raw == nil && version == 0
	l.mu.Unlock()
	if raw == nil && version == 0 {
		return nil, nil, lock.NewNeverWritten(l.Describe())
	}
	if raw == nil {
		return nil, nil, lock.NewNotFound(l.Describe())
	}
	var rec lock.Record
	if err := json.Unmarshal(raw, &rec); err != nil {
		return nil, nil, lock.NewCorrupt(l.Describe(), err)
	}
	l.setVersion(version)
	return &rec, raw, nil
}

// Create stores rec if no record exists; after a Get that found none was
// ever written, only if that is still so.
func (l *MemoryLock) Create(ctx context.Context, rec lock.Record) error {
	l.mu.Lock()
	never := l.readNever
	l.mu.Unlock()
	return l.write(ctx, "create", rec, func(s *MemoryStore) bool { return s.raw == nil && (!never || s.version == 0) })
}

// Update stores rec if the store still holds the version this lock last saw.
func (l *MemoryLock) Update(ctx context.Context, rec lock.Record) error {
	l.mu.Lock()
	seen := l.version
	l.mu.Unlock()
	if seen == 0 {
		return fmt.Errorf("%s: update before get or create", l.Describe())
	}
	return l.write(ctx, "update", rec, func(s *MemoryStore) bool { return s.raw != nil && s.version == seen })
}

func (l *MemoryLock) write(ctx context.Context, op string, rec lock.Record, ok func(*MemoryStore) bool) error {
	raw, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("%s: encode record: %w", l.Describe(), err)
	}
	s := l.store
	if err := l.enter(ctx, op); err != nil {
		return err
	}
	if !ok(s) {
		s.mu.Unlock()
		return lock.NewConflict(l.Describe(), nil)
	}
	s.raw = raw
	s.version++
	version := s.version
	s.mu.Unlock()
	l.setVersion(version)
	s.hub.Notify()
	return nil
}

// enter waits out a cut-off of this handle, then enters the store.
func (l *MemoryLock) enter(ctx context.Context, op string) error {
	if err := l.cut.Wait(ctx); err != nil {
		return fmt.Errorf("%s: %s: cut off: %w", l.Describe(), op, err)
	}
	return l.store.enter(ctx, op)
}

func (l *MemoryLock) setVersion(v uint64) {
	l.mu.Lock()
	l.version, l.readNever = v, false
	l.mu.Unlock()
}

// Changes signals after every write to the store.
func (l *MemoryLock) Changes(ctx context.Context) <-chan struct{} { return l.store.hub.Subscribe(ctx) }

// RecordEvent does nothing: there is no event sink in memory.
func (l *MemoryLock) RecordEvent(string) {}

// Identity returns the candidate identity.
func (l *MemoryLock) Identity() string { return l.identity }

// Describe names the lock, as memory://name.
func (l *MemoryLock) Describe() string { return "memory://" + l.store.name }

// MemoryHarness is a Harness (and Blocker, Deleter and Cutter) over
// in-memory stores, one per record name: for the suites' own tests.
type MemoryHarness struct {
	mu     sync.Mutex
	stores map[string]*MemoryStore
}

// Store returns the store holding the record called name.
func (h *MemoryHarness) Store(name string) *MemoryStore {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stores == nil {
		h.stores = map[string]*MemoryStore{}
	}
	if h.stores[name] == nil {
		h.stores[name] = NewMemoryStore(name)
	}
	return h.stores[name]
}

// NewLock returns a lock on the record called name.
func (h *MemoryHarness) NewLock(_ *testing.T, name, identity string) lock.Interface {
	return h.Store(name).Lock(identity)
}

// Corrupt stores bytes that are not a record.
func (h *MemoryHarness) Corrupt(_ *testing.T, name string) { h.Store(name).SetRaw([]byte("{not json")) }

// Stored returns the stored bytes.
func (h *MemoryHarness) Stored(_ *testing.T, name string) []byte { return h.Store(name).Raw() }

// Block makes calls on the record hang until unblocked.
func (h *MemoryHarness) Block(_ *testing.T, name string) func() { return h.Store(name).Block() }

// Refuse makes every call on the record fail at once until restored
// (locktest.Refuser).
func (h *MemoryHarness) Refuse(_ *testing.T, name string) func() {
	st := h.Store(name)
	st.SetFault(func(op string) error { return fmt.Errorf("%s: the test's store refuses every call", op) })
	return func() { st.SetFault(nil) }
}

// Delete removes the record.
func (h *MemoryHarness) Delete(_ *testing.T, name string) { h.Store(name).Delete() }

// CutOff makes the calls of l, a lock NewLock returned, hang until resumed.
func (h *MemoryHarness) CutOff(t *testing.T, l lock.Interface) func() {
	m, ok := l.(*MemoryLock)
	if !ok {
		t.Fatalf("locktest: %s is not a MemoryLock", l.Describe())
	}
	return m.cut.Hold()
}
