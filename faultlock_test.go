// The lock wrappers the elector's tests inject faults with: failing,
// hanging, gated, blind, lagging and skewed stores, one each.

package leaderelection

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/clock"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/b3df926d/leaderelection/lock"
)

// failingLock makes Get and Update fail while fail is set, and Create
// while failCreate is.
type failingLock struct {
	lock.Interface
	fail       atomic.Bool
	failCreate atomic.Bool
	attempts   atomic.Int32
}

func (f *failingLock) Create(ctx context.Context, r lock.Record) error {
	if f.failCreate.Load() {
		f.attempts.Add(1)
		return errors.New("injected store failure")
	}
	return f.Interface.Create(ctx, r)
}

func (f *failingLock) Update(ctx context.Context, r lock.Record) error {
	if f.fail.Load() {
		f.attempts.Add(1)
		return errors.New("injected store failure")
	}
	return f.Interface.Update(ctx, r)
}

func (f *failingLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	if f.fail.Load() {
		f.attempts.Add(1)
		return nil, nil, errors.New("injected store failure")
	}
	return f.Interface.Get(ctx)
}

// blindLock hides the Watcher of the lock it wraps, as a store that
// cannot notify.
type blindLock struct{ lock.Interface }

// endedWatchLock is a lock whose watch has ended for good: its Changes
// channel is closed at once.
type endedWatchLock struct{ lock.Interface }

func (endedWatchLock) Changes(context.Context) <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	return ch
}

// downWatchLock is a lock whose watch is down for now: it reports so
// through lock.WatchState and signals nothing.
type downWatchLock struct{ lock.Interface }

func (downWatchLock) Changes(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{})
	context.AfterFunc(ctx, func() { close(ch) })
	return ch
}

func (downWatchLock) Watching() bool { return false }

// agedLock is a lock.Aged that reports, for the record first written at
// writtenAt, the true time since then on the election's clock: the most a
// correct lock may report.
type agedLock struct {
	lock.Interface
	el        *election
	writtenAt time.Time
	raw       []byte
}

func (a *agedLock) Age(raw []byte) (time.Duration, bool) {
	if string(raw) != string(a.raw) {
		return 0, false
	}
	return a.el.clk.Since(a.writtenAt), true
}

// beforeCreateLock calls before, once, ahead of the first Create after
// armed is set.
type beforeCreateLock struct {
	lock.Interface
	before func()
	armed  atomic.Bool
	once   sync.Once
}

func (l *beforeCreateLock) Create(ctx context.Context, rec lock.Record) error {
	if l.armed.Load() {
		l.once.Do(l.before)
	}
	return l.Interface.Create(ctx, rec)
}

// signalLock replaces the watch of the lock it wraps by ch: the candidate
// reads when the test signals, or when its own timers fire. gone counts
// the reads that found no record.
type signalLock struct {
	lock.Interface
	ch   chan struct{}
	gone atomic.Int32
}

func (s *signalLock) Changes(context.Context) <-chan struct{} { return s.ch }

func (s *signalLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	rec, raw, err := s.Interface.Get(ctx)
	if lock.IsNotFound(err) {
		s.gone.Add(1)
	}
	return rec, raw, err
}

// interposedLock runs before (once, if set) just before the next Update
// reaches the lock it wraps: another writer that gets in between.
type interposedLock struct {
	lock.Interface
	before atomic.Pointer[func()]
}

func (l *interposedLock) Update(ctx context.Context, r lock.Record) error {
	if f := l.before.Swap(nil); f != nil {
		(*f)()
	}
	return l.Interface.Update(ctx, r)
}

// lateLock makes Create hang on a gate while armed, ignoring the call's
// context, and then fail if that context has ended meanwhile (as go-git
// does: "listing references: context canceled"). creates counts the
// Creates that have returned.
type lateLock struct {
	lock.Interface
	create  atomic.Pointer[gate]
	creates atomic.Int32
}

func (l *lateLock) Create(ctx context.Context, r lock.Record) error {
	defer l.creates.Add(1)
	if g := l.create.Load(); g != nil {
		g.wait()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	return l.Interface.Create(ctx, r)
}

// slowReadLock is a polling lock whose reads take read on the fake clock;
// it notes the time of its first not-found and of its Create.
type slowReadLock struct {
	plainNotFound
	clk                *clocktesting.FakeClock
	read               time.Duration
	firstGone, created atomic.Pointer[time.Time]
}

func (s *slowReadLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	s.clk.Step(s.read)
	rec, raw, err := s.plainNotFound.Get(ctx)
	if now := s.clk.Now(); lock.IsNotFound(err) && s.firstGone.Load() == nil {
		s.firstGone.Store(&now)
	}
	return rec, raw, err
}

func (s *slowReadLock) Create(ctx context.Context, r lock.Record) error {
	now := s.clk.Now()
	s.created.Store(&now)
	return s.plainNotFound.Create(ctx, r)
}

// plainNotFound hides the watch of the lock it wraps and turns a
// never-written not-found into a plain one, as a real store returns.
type plainNotFound struct{ lock.Interface }

func (p plainNotFound) Get(ctx context.Context) (*lock.Record, []byte, error) {
	rec, raw, err := p.Interface.Get(ctx)
	if lock.IsNotFound(err) {
		err = lock.NewNotFound(p.Describe())
	}
	return rec, raw, err
}

// goneClockLock hides the watch of the lock it wraps (a polling follower)
// and notes the fake time of the first Get that found no record.
type goneClockLock struct {
	lock.Interface
	clk    clock.PassiveClock
	goneAt *atomic.Pointer[time.Time]
}

func (g *goneClockLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	rec, raw, err := g.Interface.Get(ctx)
	if lock.IsNotFound(err) && g.goneAt.Load() == nil {
		now := g.clk.Now()
		g.goneAt.Store(&now)
	}
	return rec, raw, err
}

// gate is a callback, or a store call, that blocks until opened, whatever
// its context says.
type gate struct {
	ch      chan struct{}
	once    sync.Once
	entered atomic.Int32
}

func newGate(t *testing.T) *gate {
	g := &gate{ch: make(chan struct{})}
	t.Cleanup(g.open)
	return g
}

func (g *gate) open() { g.once.Do(func() { close(g.ch) }) }

// ctx is a context that ends when g opens.
func (g *gate) ctx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-g.ch; cancel() }()
	return ctx
}

func (g *gate) wait() { g.entered.Add(1); <-g.ch }

// deafUntil makes the leader's function in c ignore the elector's
// cancellation until g opens.
func deafUntil(g *gate, c *Config) {
	work := c.Callbacks.OnStartedLeading
	c.Callbacks.OnStartedLeading = func(ctx context.Context) {
		ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		context.AfterFunc(g.ctx(), cancel)
		work(ctx)
	}
}

// hangingLock makes Create, or Update, hang on a gate, ignoring the call's
// context, while armed.
type hangingLock struct {
	lock.Interface
	create, update atomic.Pointer[gate]
}

func (h *hangingLock) Create(ctx context.Context, r lock.Record) error {
	if g := h.create.Load(); g != nil {
		g.wait()
		ctx = context.WithoutCancel(ctx) // and then succeeds, late
	}
	return h.Interface.Create(ctx, r)
}

func (h *hangingLock) Update(ctx context.Context, r lock.Record) error {
	if g := h.update.Load(); g != nil {
		g.wait()
		ctx = context.WithoutCancel(ctx)
	}
	return h.Interface.Update(ctx, r)
}

// skewedLock writes records whose timestamps are shifted by skew, as a
// holder whose wall clock was stepped (NTP, an operator) writes them; its
// timers, on the monotonic clock, are unaffected.
type skewedLock struct {
	lock.Interface
	skew atomic.Int64 // a time.Duration
}

func (s *skewedLock) shifted(r lock.Record) lock.Record {
	d := time.Duration(s.skew.Load())
	r.AcquireTime = metav1.NewTime(r.AcquireTime.Add(d))
	r.RenewTime = metav1.NewTime(r.RenewTime.Add(d))
	return r
}

func (s *skewedLock) Create(ctx context.Context, r lock.Record) error {
	return s.Interface.Create(ctx, s.shifted(r))
}

func (s *skewedLock) Update(ctx context.Context, r lock.Record) error {
	return s.Interface.Update(ctx, s.shifted(r))
}
