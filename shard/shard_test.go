//go:build unix

package shard_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/electiontest"
	"github.com/b3df926d/leaderelection/shard"
)

// The scenarios run several replicas in this process over the file
// backend (real files in t.TempDir()), each shard's function recording
// its tenure in that shard's electiontest.Tracker, the fencing sink: a
// shard started while another replica still works it, or under a term
// not above the shard's previous one, fails the test.

// fast is the timing the scenarios use: the elector's rules with a 1 s
// margin (LeaseDuration − RenewDeadline), wide enough for a loaded CI
// machine under -race.
func fast() shard.Options {
	return shard.Options{Name: "work", Slots: 5, LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second}
}

// linger is how long a shard's function goes on after its context is
// cancelled (finishing the item at hand), so that a shard started
// before its previous owner's function returned overlaps it visibly.
const linger = 100 * time.Millisecond

// within bounds every wait: generous, as a loaded machine is slow; the
// targets (hand-over < 1 s, take-over within LeaseDuration + 2 s) are
// for benchmarks, not pass/fail tests.
const within = 60 * time.Second

type fleet struct {
	t      *testing.T
	st     store
	opt    shard.Options
	m      int
	shards []*electiontest.Tracker

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced when a shard starts or stops
	replicas []*replica
}

type replica struct {
	id     string
	m      int
	cancel context.CancelFunc
	done   chan error
	err    error
	// cut fails every store call at once (the replica crashed: nothing it
	// sends reaches the store); frozen makes every call hang until its
	// context ends (a store cut off, a paused disk).
	cut, frozen atomic.Bool
	// lagSlots drops the signals of its slot records' watches.
	lagSlots atomic.Bool
}

func newFleet(t *testing.T, st store, m int) *fleet {
	f := &fleet{t: t, st: st, opt: fast(), m: m, changed: make(chan struct{})}
	for range m {
		f.shards = append(f.shards, electiontest.NewTracker())
	}
	t.Cleanup(func() {
		f.stopAll()
		for _, tr := range f.shards {
			tr.Check(t)
		}
		checkNoLeaks(t)
	})
	return f
}

func (f *fleet) notify() {
	f.mu.Lock()
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

// start runs a replica with identity id.
func (f *fleet) start(id string) *replica { return f.startWith(id, f.m, f.opt) }

func (f *fleet) startWith(id string, m int, opt shard.Options) *replica {
	return f.launch(id, id, m, opt)
}

// launch runs a replica that the trackers know as id and the store as
// identity.
func (f *fleet) launch(id, identity string, m int, opt shard.Options) *replica {
	r := &replica{id: id, m: m, done: make(chan error, 1)}
	opt.Locks = f.st.locks(identity, func(l lock.Interface) lock.Interface { return &faulty{Interface: l, r: r} })
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	f.mu.Lock()
	f.replicas = append(f.replicas, r)
	f.mu.Unlock()
	go func() {
		r.done <- shard.Run(ctx, opt, m, func(ctx context.Context, s int) {
			term, ok := shard.TermFrom(ctx)
			if !ok {
				f.t.Errorf("%s: shard %d's context carries no term", id, s)
			}
			if s >= len(f.shards) {
				f.t.Errorf("%s started shard %d of %d", id, s, m)
				return
			}
			i := f.shards[s].Begin(id, term)
			f.notify()
			<-ctx.Done()
			time.Sleep(linger) // the work at hand, not synchronisation
			f.shards[s].End(i)
			f.notify()
		})
	}()
	return r
}

// stop cancels r's context and waits for Run to return.
func (f *fleet) stop(r *replica) error {
	f.t.Helper()
	r.cancel()
	return r.wait(f.t)
}

func (r *replica) wait(t *testing.T) error {
	t.Helper()
	if r.done == nil {
		return r.err
	}
	select {
	case r.err = <-r.done:
		r.done = nil
		return r.err
	case <-time.After(within):
		t.Fatalf("%s: Run did not return within %v:\n%s", r.id, within, strings.Join(shardStacks(), "\n\n"))
		return nil
	}
}

func (f *fleet) stopAll() {
	f.mu.Lock()
	rs := slices.Clone(f.replicas)
	f.mu.Unlock()
	for _, r := range rs {
		r.cut.Store(false)
		r.frozen.Store(false)
		r.cancel()
	}
	for _, r := range rs {
		if err := r.wait(f.t); err != nil && !errors.Is(err, shard.ErrShardCount) {
			f.t.Errorf("%s: Run: %v", r.id, err)
		}
	}
}

// owners returns each shard's current owner ("" if none).
func (f *fleet) owners() []string {
	out := make([]string, f.m)
	for s, tr := range f.shards {
		if ts := tr.Terms(); len(ts) > 0 && ts[len(ts)-1].End.IsZero() {
			out[s] = ts[len(ts)-1].ID
		}
	}
	return out
}

// settled waits until every shard runs on one of ids, ⌊M/N⌋ or ⌈M/N⌉
// each, and returns the owners.
func (f *fleet) settled(ids ...string) []string {
	f.t.Helper()
	deadline := time.After(within)
	for {
		f.mu.Lock()
		ch := f.changed
		f.mu.Unlock()
		owners := f.owners()
		if balanced(owners, ids) {
			return owners
		}
		select {
		case <-ch:
		case <-deadline:
			f.t.Fatalf("not settled on %v within %v: owners %q; goroutines:\n%s", ids, within, owners, strings.Join(shardStacks(), "\n\n"))
		}
	}
}

func balanced(owners, ids []string) bool {
	count := map[string]int{}
	for _, o := range owners {
		if !slices.Contains(ids, o) {
			return false
		}
		count[o]++
	}
	q := len(owners) / len(ids)
	for _, id := range ids {
		if count[id] < q || count[id] > q+1 {
			return false
		}
	}
	return true
}

func shardsOf(owners []string, id string) []int {
	var out []int
	for s, o := range owners {
		if o == id {
			out = append(out, s)
		}
	}
	return out
}

// checkNoLeaks waits until no goroutine of this package, or of a shard
// function, is left.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		left := shardStacks()
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after every Run returned:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising with it
	}
}

// shardStacks returns the stacks of the goroutines of this package and
// of shard functions.
func shardStacks() []string {
	buf := make([]byte, 4<<20)
	var out []string
	for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
		if strings.Contains(g, "leaderelection/shard.") || strings.Contains(g, "leaderelection/shard_test.(*fleet).launch") {
			out = append(out, g)
		}
	}
	return out
}

func TestThreeReplicasSettleBalanced(t *testing.T) { eachStore(t, testThreeReplicasSettleBalanced) }

func testThreeReplicasSettleBalanced(t *testing.T, st store) {
	f := newFleet(t, st, 12)
	for _, id := range []string{"a", "b", "c"} {
		f.start(id)
	}
	owners := f.settled("a", "b", "c")
	for _, id := range []string{"a", "b", "c"} {
		if n := len(shardsOf(owners, id)); n != 4 {
			t.Errorf("%s owns %d shards, want 4: %q", id, n, owners)
		}
	}
}

func TestGracefulStopHandsItsShardsOver(t *testing.T) {
	eachStore(t, testGracefulStopHandsItsShardsOver)
}

func testGracefulStopHandsItsShardsOver(t *testing.T, st store) {
	f := newFleet(t, st, 12)
	a, b, c := f.start("a"), f.start("b"), f.start("c")
	before := f.settled("a", "b", "c")
	start := time.Now()
	if err := f.stop(c); err != nil {
		t.Fatalf("c: Run: %v", err)
	}
	after := f.settled("a", "b")
	t.Logf("c's shards handed over %v after its stop began", time.Since(start).Round(time.Millisecond))
	for _, r := range []*replica{a, b} {
		if kept := shardsOf(after, r.id); !isSuperset(kept, shardsOf(before, r.id)) {
			t.Errorf("%s lost shards it did not have to: %v before, %v after", r.id, shardsOf(before, r.id), kept)
		}
	}
}

func TestCrashedReplicaShardsAreTakenAfterTheLease(t *testing.T) {
	eachStore(t, testCrashedReplicaShardsAreTakenAfterTheLease)
}

func testCrashedReplicaShardsAreTakenAfterTheLease(t *testing.T, st store) {
	for _, c := range []struct {
		name  string
		crash func(f *fleet, r *replica)
	}{
		// Its context cancelled and nothing it writes reaches the store:
		// its release fails, and the others wait out its lease.
		{"cut off and stopped", func(f *fleet, r *replica) {
			r.cut.Store(true)
			if err := f.stop(r); err != nil {
				f.t.Errorf("c: Run: %v", err)
			}
		}},
		// Every store call hangs: its step-down timer cancels its shards
		// RenewDeadline after its last renewal, before the others may
		// evict its slot, LeaseDuration after they last saw it change.
		{"store frozen", func(f *fleet, r *replica) { r.frozen.Store(true) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFleet(t, st.again(t), 12)
			f.start("a")
			f.start("b")
			r := f.start("c")
			f.settled("a", "b", "c")
			start := time.Now()
			c.crash(f, r)
			f.settled("a", "b")
			t.Logf("c's shards taken %v after the crash (LeaseDuration %v)", time.Since(start).Round(time.Millisecond), f.opt.LeaseDuration)
		})
	}
}

func TestJoiningReplicaGetsItsShareRevokedBeforeAssigned(t *testing.T) {
	eachStore(t, testJoiningReplicaGetsItsShareRevokedBeforeAssigned)
}

func testJoiningReplicaGetsItsShareRevokedBeforeAssigned(t *testing.T, st store) {
	f := newFleet(t, st, 12)
	f.start("a")
	f.start("b")
	before := f.settled("a", "b")
	f.start("c")
	after := f.settled("a", "b", "c")
	// Minimal movement: a and b only give shards up, to c.
	for _, id := range []string{"a", "b"} {
		if !isSuperset(shardsOf(before, id), shardsOf(after, id)) {
			t.Errorf("%s gained shards when c joined: %v before, %v after", id, shardsOf(before, id), shardsOf(after, id))
		}
	}
	// Revoke before assign: the trackers (checked at cleanup) fail the
	// test if c started a shard before its previous owner's function
	// had returned.
}

// TestLaggingSlotWatchDoesNotUndoAJoin: a member whose watch of the
// joiner's slot lags reads the assignment that adds the joiner before it
// sees the joiner's slot Held. It must not take its stale view for a
// departure and write the assignment back without the joiner (which
// would then propose itself again: extra generations, shards moved back
// and forth, a and b gaining shards they did not have): the join costs
// exactly one generation.
func TestLaggingSlotWatchDoesNotUndoAJoin(t *testing.T) {
	eachStore(t, testLaggingSlotWatchDoesNotUndoAJoin)
}

func testLaggingSlotWatchDoesNotUndoAJoin(t *testing.T, st store) {
	f := newFleet(t, st, 12)
	f.start("a")
	b := f.start("b")
	before := f.settled("a", "b")
	rec, ok := st.read("work-shards")
	if !ok {
		t.Fatal("no assignment record")
	}
	gen := rec.LeaderTransitions
	b.lagSlots.Store(true)
	f.start("c")
	after := f.settled("a", "b", "c")
	if rec, ok := st.read("work-shards"); !ok || rec.LeaderTransitions != gen+1 {
		t.Errorf("c's join took the assignment from generation %d to %d, want %d", gen, rec.LeaderTransitions, gen+1)
	}
	for _, id := range []string{"a", "b"} {
		if !isSuperset(shardsOf(before, id), shardsOf(after, id)) {
			t.Errorf("%s gained shards when c joined: %v before, %v after", id, shardsOf(before, id), shardsOf(after, id))
		}
	}
}

func TestRecordsDeletedByAnOperator(t *testing.T) { eachStore(t, testRecordsDeletedByAnOperator) }

func testRecordsDeletedByAnOperator(t *testing.T, st store) {
	f := newFleet(t, st, 12)
	f.start("a")
	f.start("b")
	f.start("c")
	f.settled("a", "b", "c")
	const assignment = "work-shards"
	rec, ok := st.read(assignment)
	if !ok {
		t.Fatalf("no record %s", assignment)
	}
	gen := rec.LeaderTransitions

	// The assignment record: the members write it again, with a higher
	// generation; nothing moves.
	if err := st.remove(assignment); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the assignment written again above generation "+fmt.Sprint(gen), func() bool {
		rec, ok := st.read(assignment)
		return ok && rec.LeaderTransitions > gen
	})
	f.settled("a", "b", "c")

	// A live member's slot record: its holder steps down (its renewal
	// finds the record gone), writes it back, and joins again; its
	// shards come back under higher terms (the trackers check).
	owners := f.owners()
	// c's one slot record (a tenure c lost on a slow machine leaves one
	// more until it is evicted).
	var slot string
	waitUntil(t, "exactly one slot record held by c", func() bool {
		var held []string
		for k := range f.opt.Slots {
			name := fmt.Sprintf("work-slot-%d", k)
			if rec, ok := st.read(name); ok && strings.HasPrefix(rec.HolderIdentity, "c#") {
				held = append(held, name)
			}
		}
		if len(held) == 1 {
			slot = held[0]
		}
		return len(held) == 1
	})
	if err := st.remove(slot); err != nil {
		t.Fatal(err)
	}
	f.waitEnded("c", shardsOf(owners, "c"))
	f.settled("a", "b", "c")
}

// waitEnded waits until id's tenure of each of shards has ended.
func (f *fleet) waitEnded(id string, shards []int) {
	f.t.Helper()
	for _, s := range shards {
		f.shards[s].WaitFor(f.t, fmt.Sprintf("%s's tenure of shard %d to end", id, s), within, func(ts []electiontest.Term) bool {
			for _, tm := range ts {
				if tm.ID == id && !tm.End.IsZero() {
					return true
				}
			}
			return false
		})
	}
}

// TestRepeatedIdentityIsTwoMembers: two live replicas that share an
// identity (a copied configuration) hold two slots and are two members,
// each with its share; neither runs a shard the other runs.
func TestRepeatedIdentityIsTwoMembers(t *testing.T) { eachStore(t, testRepeatedIdentityIsTwoMembers) }

func testRepeatedIdentityIsTwoMembers(t *testing.T, st store) {
	f := newFleet(t, st, 12)
	f.launch("a1", "a", f.m, f.opt)
	f.launch("a2", "a", f.m, f.opt)
	f.start("b")
	f.settled("a1", "a2", "b")
}

func TestBadInputIsRefused(t *testing.T) {
	dir := t.TempDir()
	locks := func(name string, fresh bool) (lock.Interface, error) {
		return file.New(context.Background(), file.Options{Path: filepath.Join(dir, name), Identity: "a"})
	}
	fn := func(context.Context, int) {}
	ok := fast()
	ok.Locks = locks
	for _, c := range []struct {
		name   string
		opt    func(o *shard.Options)
		shards int
		want   string
	}{
		{"no shards", nil, 0, "shard count (0) must be at least 1"},
		{"negative shards", nil, -3, "shard count (-3) must be at least 1"},
		{"no name", func(o *shard.Options) { o.Name = "" }, 4, "Options.Name"},
		{"no locks", func(o *shard.Options) { o.Locks = nil }, 4, "Options.Locks"},
		{"too many slots", func(o *shard.Options) { o.Slots = 65 }, 4, "Options.Slots (65)"},
		{"timing", func(o *shard.Options) { o.RenewDeadline = 5 * time.Second }, 4, "LeaseDuration (4s) must be greater than RenewDeadline (5s)"},
		{"negative stop timeout", func(o *shard.Options) { o.StopTimeout = -time.Second }, 4, "Options.StopTimeout"},
	} {
		t.Run(c.name, func(t *testing.T) {
			o := ok
			if c.opt != nil {
				c.opt(&o)
			}
			err := shard.Run(context.Background(), o, c.shards, fn)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Run: %v, want an error containing %q", err, c.want)
			}
		})
	}
	if entries, _ := os.ReadDir(dir); len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		// Opening handles may create flock files; no record is written.
		for _, n := range names {
			if !strings.HasSuffix(n, ".lock") {
				t.Errorf("bad input wrote %s", n)
			}
		}
	}
}

func TestDifferentShardCountIsRefused(t *testing.T) { eachStore(t, testDifferentShardCountIsRefused) }

func testDifferentShardCountIsRefused(t *testing.T, st store) {
	t.Run("joining a running set", func(t *testing.T) {
		f := newFleet(t, st.again(t), 12)
		f.start("a")
		f.settled("a")
		b := f.startWith("b", 10, f.opt)
		if err := b.wait(t); !errors.Is(err, shard.ErrShardCount) || !strings.Contains(err.Error(), "12 shards in the assignment record") {
			t.Fatalf("b: Run: %v, want ErrShardCount naming both counts", err)
		}
		f.settled("a")
	})
	t.Run("starting together", func(t *testing.T) {
		f := newFleet(t, st.again(t), 12)
		a := f.start("a")
		b := f.startWith("b", 10, f.opt)
		// Whichever assignment is written first wins: b refuses, or a
		// does; never both run (the trackers, shared by shard number,
		// would see two owners).
		var refused, other *replica
		select {
		case a.err = <-a.done:
			a.done, refused, other = nil, a, b
		case b.err = <-b.done:
			b.done, refused, other = nil, b, a
		case <-time.After(within):
			t.Fatal("neither replica refused")
		}
		if !errors.Is(refused.err, shard.ErrShardCount) {
			t.Fatalf("%s: Run: %v, want ErrShardCount", refused.id, refused.err)
		}
		f.m = other.m
		f.settled(other.id)
		t.Logf("%s refused; %s runs its %d shards", refused.id, other.id, other.m)
	})
}

func isSuperset(big, small []int) bool {
	for _, s := range small {
		if !slices.Contains(big, s) {
			return false
		}
	}
	return true
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising with it
	}
}

// TestFunctionReturningEarlyStillReleases: a replica whose shard
// functions returned by themselves (the shards stay idle on it) stops
// them, releases its slot and returns nil when its context ends, rather
// than waiting for returns that already happened (ErrStopTimeout).
func TestFunctionReturningEarlyStillReleases(t *testing.T) {
	dir := t.TempDir()
	opt := fast()
	opt.Locks = func(name string, fresh bool) (lock.Interface, error) {
		return file.New(context.Background(), file.Options{Path: filepath.Join(dir, name), Identity: "a"})
	}
	// Run's log tells when it has seen each function return.
	const m = 3
	idle := make(chan struct{}, m)
	log := funcr.New(func(_, args string) {
		if strings.Contains(args, "stays idle here") {
			idle <- struct{}{}
		}
	}, funcr.Options{})
	opt.Logger = &log
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- shard.Run(ctx, opt, m, func(context.Context, int) {}) }()
	for range m {
		select {
		case <-idle:
		case <-time.After(within):
			t.Fatalf("Run did not see its %d functions return within %v", m, within)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v, want nil", err)
		}
	case <-time.After(within):
		t.Fatalf("Run did not return within %v", within)
	}
	for k := range opt.Slots {
		l, err := file.New(context.Background(), file.Options{Path: filepath.Join(dir, fmt.Sprintf("work-slot-%d", k)), Identity: "observer"})
		if err != nil {
			t.Fatal(err)
		}
		if rec, _, err := l.Get(context.Background()); err == nil && rec.HolderIdentity != "" {
			t.Errorf("slot %d still held by %q after Run returned", k, rec.HolderIdentity)
		}
	}
	checkNoLeaks(t)
}
