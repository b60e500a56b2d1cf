package leaderelection

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	clocktesting "k8s.io/utils/clock/testing"

	"github.com/b3df926d/leaderelection/internal/hold"
	"github.com/b3df926d/leaderelection/lock"
)

// faultLock is the one lock wrapper the elector's tests inject faults
// with. It hides the optional capabilities of the lock it wraps (its
// watch above all: a candidate on it polls) unless the test gives them:
// watch, watchDown, age. The faults below the line are switched while the
// candidate runs; what it records, the test reads.
type faultLock struct {
	lock.Interface

	watch         func(context.Context) <-chan struct{}  // its watch (nil: none, a store that polls)
	watchDown     bool                                   // lock.WatchState: the watch is down for now
	age           func(raw []byte) (time.Duration, bool) // lock.Aged (nil: no age known)
	plainNotFound bool                                   // a never-written not-found is a plain one, as a real store returns
	clk           *clocktesting.FakeClock                // for readTakes, firstGone and created
	readTakes     time.Duration                          // each Get first moves clk this far: a slow store

	fail, failCreate atomic.Bool            // Get and Update, or Create, fail
	failUpdate       atomic.Bool            // Update fails (Get works: a cache serving reads while its store is down)
	hangUpdate       atomic.Pointer[gate]   // Update hangs on the gate, ignoring its context, then succeeds late
	hangCreate       atomic.Pointer[gate]   // ... Create
	lateCreate       atomic.Pointer[gate]   // Create hangs on the gate, then fails if its context ended meanwhile (as go-git does)
	beforeUpdate     atomic.Pointer[func()] // runs once, just before the next Update: a writer that gets in between
	beforeCreate     atomic.Pointer[func()] // ... Create
	skew             atomic.Int64           // a time.Duration: written timestamps are off by it, as from a stepped wall clock

	attempts           atomic.Int32              // calls failed by fail or failCreate
	gone               atomic.Int32              // Gets that found no record
	creates            atomic.Int32              // Creates that returned
	firstGone, created atomic.Pointer[time.Time] // on clk: the first Get that found no record, the last Create
}

var errInjected = errors.New("injected store failure")

func (f *faultLock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	if f.readTakes > 0 {
		f.clk.Step(f.readTakes)
	}
	if f.fail.Load() {
		f.attempts.Add(1)
		return nil, nil, errInjected
	}
	rec, raw, err := f.Interface.Get(ctx)
	if !lock.IsNotFound(err) {
		return rec, raw, err
	}
	if f.plainNotFound {
		err = lock.NewNotFound(f.Describe())
	}
	f.gone.Add(1)
	if f.clk != nil && f.firstGone.Load() == nil {
		now := f.clk.Now()
		f.firstGone.Store(&now)
	}
	return rec, raw, err
}

func (f *faultLock) Create(ctx context.Context, r lock.Record) error {
	defer f.creates.Add(1)
	if g := f.lateCreate.Load(); g != nil {
		g.wait()
		if err := ctx.Err(); err != nil {
			return err
		}
	}
	if before := f.beforeCreate.Swap(nil); before != nil {
		(*before)()
	}
	if g := f.hangCreate.Load(); g != nil {
		g.wait()
		ctx = context.WithoutCancel(ctx) // and then succeeds, late
	}
	if f.failCreate.Load() {
		f.attempts.Add(1)
		return errInjected
	}
	if f.clk != nil {
		now := f.clk.Now()
		f.created.Store(&now)
	}
	return f.Interface.Create(ctx, f.skewed(r))
}

func (f *faultLock) Update(ctx context.Context, r lock.Record) error {
	if before := f.beforeUpdate.Swap(nil); before != nil {
		(*before)()
	}
	if g := f.hangUpdate.Load(); g != nil {
		g.wait()
		ctx = context.WithoutCancel(ctx)
	}
	if f.fail.Load() || f.failUpdate.Load() {
		f.attempts.Add(1)
		return errInjected
	}
	return f.Interface.Update(ctx, f.skewed(r))
}

func (f *faultLock) skewed(r lock.Record) lock.Record {
	if d := time.Duration(f.skew.Load()); d != 0 {
		r.AcquireTime = metav1.NewTime(r.AcquireTime.Add(d))
		r.RenewTime = metav1.NewTime(r.RenewTime.Add(d))
	}
	return r
}

// Changes, Watching and Age give the capabilities the test set; unset,
// each answers as a lock without it is treated (no watch; no age).
func (f *faultLock) Changes(ctx context.Context) <-chan struct{} {
	if f.watch == nil {
		return nil
	}
	return f.watch(ctx)
}

func (f *faultLock) Watching() bool { return !f.watchDown }

func (f *faultLock) Age(raw []byte) (time.Duration, bool) {
	if f.age == nil {
		return 0, false
	}
	return f.age(raw)
}

// watchEnded is a watch that has ended for good: its channel is closed at
// once (and kept in endedWatches).
func watchEnded(context.Context) <-chan struct{} {
	ch := make(chan struct{})
	close(ch)
	endedWatches.Store((<-chan struct{})(ch), true)
	return ch
}

// endedWatches holds the channels watchEnded returned, for the elector
// tests' parking (due): a receive would tell a closed watch, but could
// take a signal from an open one.
var endedWatches sync.Map

// watchSilent is a watch that signals nothing until its context ends.
func watchSilent(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{})
	context.AfterFunc(ctx, func() { close(ch) })
	return ch
}

// watchOn is a watch that signals when the test sends on ch.
func watchOn(ch chan struct{}) func(context.Context) <-chan struct{} {
	return func(context.Context) <-chan struct{} { return ch }
}

// gate is a callback, or a store call, that blocks until opened, whatever
// its context says.
type gate struct {
	hold    hold.Gate
	open    func() // resumes hold
	entered atomic.Int32
}

func newGate(t *testing.T) *gate {
	g := &gate{}
	g.open = g.hold.Hold()
	t.Cleanup(g.open)
	return g
}

// ctx is a context that ends when g opens.
func (g *gate) ctx() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = g.hold.Wait(context.Background()); cancel() }()
	return ctx
}

func (g *gate) wait() { g.entered.Add(1); _ = g.hold.Wait(context.Background()) }

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
