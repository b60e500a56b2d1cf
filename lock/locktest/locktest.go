// Package locktest is the conformance suite every lock backend runs against
// its real store, in the manner of gocloud.dev's blob/drivertest.
//
// A backend's test provides a Harness that makes locks on a real server and
// calls RunConformanceTests. Behaviour is specified here once, not re-tested
// ad hoc per backend: compare-and-swap under contention, not-found, corrupt
// records, context cancellation and timeouts, watch signals, release
// followed by re-acquisition, and a record deleted under its handles.
package locktest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/lock"
)

// Harness makes locks on one real store. Each test uses names of its own, so
// one harness may serve several tests.
type Harness interface {
	// NewLock returns a new handle (with its own client state) on the record
	// called name, acting for identity. Handles with the same name share one
	// stored record.
	NewLock(t *testing.T, name, identity string) lock.Interface
	// Corrupt stores bytes that do not decode as a record under name,
	// writing to the store directly rather than through a lock.
	Corrupt(t *testing.T, name string)
	// Stored returns the bytes stored under name, read directly from the
	// store, or nil if nothing is stored.
	Stored(t *testing.T, name string) []byte
}

// Blocker is implemented by harnesses that can make the store stop answering
// (for example by pausing a proxy in front of the server, or holding the
// store's own lock), so that the suite can check timeouts are honoured. For
// a lock with lock.WatchState, the store must also drop the watch's
// connection, as a store that stopped answering does in time.
type Blocker interface {
	// Block makes calls on the record called name hang until unblock is
	// called.
	Block(t *testing.T, name string) (unblock func())
}

// Refuser is implemented by harnesses that can make the store refuse every
// call, as a server that is down does (its connections refused, the calls
// in flight failed), where a Blocker's store may hold a call and apply it
// later. The elector scenarios of lock/electiontest use it for an outage
// longer than the lease: a call held through the outage may land after it
// (a takeover a follower gave up on, sent on when the store answers
// again); a refused call never does.
type Refuser interface {
	// Refuse makes every call on the record called name fail, and never
	// take effect, until restore is called.
	Refuse(t *testing.T, name string) (restore func())
}

// Deleter is implemented by harnesses that can delete a record from the
// store directly, the way an operator would (kubectl delete lease, rm,
// deleting the object or the branch), so that the suite can check how
// locks report a record that vanished under them.
type Deleter interface {
	// Delete removes the record called name from the store.
	Delete(t *testing.T, name string)
}

// Cutter is implemented by harnesses that can cut one handle off from the
// store while the others still reach it (each lock reaching the server
// through a proxy or a network link of its own), for the elector scenarios
// of lock/electiontest.
type Cutter interface {
	// CutOff makes every call of l, a lock NewLock returned, hang until
	// resume is called (or fail, once the call's context ends), as a
	// network partition would.
	CutOff(t *testing.T, l lock.Interface) (resume func())
}

// Options tune the suite for a backend.
type Options struct {
	// Racers is how many candidates race in the contention tests (default 8).
	Racers int
	// Wait bounds how long the suite waits for a store call or a watch
	// signal that must come (default 15s).
	Wait time.Duration
	// CallTimeout is the context timeout given to calls against a blocked
	// store (default 500ms); they must return within Wait.
	CallTimeout time.Duration
	// StaleReads is how long a Get may go on returning a record that
	// another handle has since replaced, for backends that serve a
	// follower's Get from a cache while the lease it saw is live (zero:
	// every Get reads the store). Whatever a cached Get returns, an Update
	// based on it must still be a compare-and-swap; the suite checks that,
	// and that a Get after StaleReads sees the change.
	StaleReads time.Duration
}

func (o Options) withDefaults() Options {
	if o.Racers <= 0 {
		o.Racers = 8
	}
	if o.Wait <= 0 {
		o.Wait = 15 * time.Second
	}
	if o.CallTimeout <= 0 {
		o.CallTimeout = 500 * time.Millisecond
	}
	return o
}

// RunConformanceTests runs the whole suite against h. Tests of a
// capability the harness lacks (Blocker, Deleter) or the lock lacks
// (lock.Watcher, lock.WatchState, lock.Aged, lock.ReadinessChecker,
// lock.DurationRules, the proof of lock.ErrNeverWritten) are skipped.
func RunConformanceTests(t *testing.T, h Harness, opts Options) {
	t.Helper()
	s := &suite{h: h, o: opts.withDefaults()}
	t.Run("GetMissingIsNotFound", s.testGetMissingIsNotFound)
	t.Run("UpdateBeforeGetFails", s.testUpdateBeforeGetFails)
	t.Run("CreateRaceHasOneWinner", s.testCreateRaceHasOneWinner)
	t.Run("UpdateRaceHasOneWinner", s.testUpdateRaceHasOneWinner)
	t.Run("StaleUpdateLoses", s.testStaleUpdateLoses)
	t.Run("RecordRoundTrips", s.testRecordRoundTrips)
	t.Run("ClaimRoundTrips", s.testClaimRoundTrips)
	t.Run("CorruptRecordIsErrorAndKept", s.testCorruptRecordIsErrorAndKept)
	t.Run("CancelledContextIsHonoured", s.testCancelledContextIsHonoured)
	t.Run("BlockedStoreTimesOut", s.testBlockedStoreTimesOut)
	t.Run("WatcherSignalsOtherWriter", s.testWatcherSignalsOtherWriter)
	t.Run("WatcherSignalsWriteRightAfterSubscribing", s.testWatcherSignalsWriteRightAfterSubscribing)
	t.Run("ReleaseThenReacquire", s.testReleaseThenReacquire)
	t.Run("DeletedRecordIsNotFoundAndNeverRecreatedByUpdate", s.testDeletedRecord)
	t.Run("NeverWrittenHoldsUntilCreate", s.testNeverWrittenHoldsUntilCreate)
	t.Run("AgedNeverOverstatesAnAge", s.testAgedNeverOverstatesAnAge)
	t.Run("WatchStateFollowsTheStore", s.testWatchStateFollowsTheStore)
	t.Run("ReadinessCheckerNamesItselfAndGetsReady", s.testReadinessChecker)
	t.Run("DurationRulesAcceptTheDefaults", s.testDurationRulesAcceptTheDefaults)
}

type suite struct {
	h Harness
	o Options
}

// Name returns a record name unique to this test run, made of lower-case
// letters, digits and dashes so that every store accepts it.
func Name(t *testing.T) string {
	t.Helper()
	base := strings.ToLower(t.Name())
	if i := strings.LastIndex(base, "/"); i >= 0 {
		base = base[i+1:]
	}
	var b strings.Builder
	for _, r := range base {
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		}
	}
	name := b.String()
	if len(name) > 30 {
		name = name[:30]
	}
	var rnd [4]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		t.Fatal(err)
	}
	return name + "-" + hex.EncodeToString(rnd[:])
}

// NewRecord returns a record held by holder, renewed now.
func NewRecord(holder string, transitions int) lock.Record {
	now := metav1.NewTime(time.Now().Truncate(time.Second))
	return lock.Record{
		HolderIdentity:       holder,
		LeaseDurationSeconds: 15,
		AcquireTime:          now,
		RenewTime:            now,
		LeaderTransitions:    transitions,
	}
}

// ctx bounds a test by Wait: for a test whose timing depends on it; a
// test of several store calls takes ctxFor.
func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.o.Wait)
	t.Cleanup(cancel)
	return ctx
}

// ctxFor bounds a test that makes up to calls store calls and waits
// (each a Wait, as Options.Wait promises a store call), plus StaleReads
// for a test that waits out a cache: the deadline catches a hung store,
// it is not a timing check. One Wait for a dozen calls was too little for
// a three-voter gossip register on a loaded machine (CI, stop 32:
// AgedNeverOverstatesAnAge's Get hit the test's deadline after 15 s of
// calls and a cluster's start).
func (s *suite) ctxFor(t *testing.T, calls int) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(calls)*s.o.Wait+s.o.StaleReads)
	t.Cleanup(cancel)
	return ctx
}

// raceCtx bounds a contention test, whose store calls all queue on one
// record (Racers concurrent writes, a read of each refusal, then a read per
// racer): Wait for each of them, as s.ctx gives Wait to a test of a few
// calls. One Wait for the lot was too little for git over ssh on a loaded
// machine, where a loser then saw the deadline instead of a conflict.
func (s *suite) raceCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(2*s.o.Racers+2)*s.o.Wait)
	t.Cleanup(cancel)
	return ctx
}

// mustCreate creates rec through l, failing t if it cannot.
func mustCreate(t *testing.T, ctx context.Context, l lock.Interface, rec lock.Record) {
	t.Helper()
	if err := l.Create(ctx, rec); err != nil {
		t.Fatalf("Create: %v", err)
	}
}

func mustGet(t *testing.T, ctx context.Context, l lock.Interface) *lock.Record {
	t.Helper()
	rec, raw, err := l.Get(ctx)
	if err != nil {
		t.Fatalf("%s: Get: %v", l.Identity(), err)
	}
	if rec == nil || len(raw) == 0 {
		t.Fatalf("%s: Get returned record %v and %d raw bytes", l.Identity(), rec, len(raw))
	}
	return rec
}

func (s *suite) testGetMissingIsNotFound(t *testing.T) {
	ctx := s.ctxFor(t, 2)
	l := s.h.NewLock(t, Name(t), "a")
	if l.Identity() != "a" {
		t.Errorf("Identity() = %q, want %q", l.Identity(), "a")
	}
	if l.Describe() == "" {
		t.Error("Describe() is empty; it must name the store object")
	}
	rec, _, err := l.Get(ctx)
	if err == nil {
		t.Fatalf("Get on a missing record returned %+v, want a not-found error", rec)
	}
	if !lock.IsNotFound(err) {
		t.Fatalf("Get on a missing record: lock.IsNotFound(%v) = false", err)
	}
	// client-go's elector only creates the record when apimachinery says
	// not-found.
	if !apierrors.IsNotFound(err) {
		t.Fatalf("Get on a missing record: apierrors.IsNotFound(%v) = false; client-go's elector would never create it", err)
	}
	if lock.IsConflict(err) {
		t.Fatalf("not-found error %v also reports conflict", err)
	}
}

func (s *suite) testUpdateBeforeGetFails(t *testing.T) {
	ctx := s.ctxFor(t, 4)
	name := Name(t)
	a, b := s.h.NewLock(t, name, "a"), s.h.NewLock(t, name, "b")
	mustCreate(t, ctx, a, NewRecord("a", 1))
	// b has never read the record: a blind write would be a
	// read-then-blind-write race.
	if err := b.Update(ctx, NewRecord("b", 2)); err == nil {
		t.Fatal("Update on a handle that never read the record succeeded: that is a blind write")
	}
	if got := mustGet(t, ctx, a); got.HolderIdentity != "a" {
		t.Fatalf("holder = %q after a refused blind update, want %q", got.HolderIdentity, "a")
	}
}

func (s *suite) testCreateRaceHasOneWinner(t *testing.T) {
	ctx := s.raceCtx(t)
	name := Name(t)
	locks := make([]lock.Interface, s.o.Racers)
	for i := range locks {
		locks[i] = s.h.NewLock(t, name, "racer-"+string(rune('a'+i)))
	}
	errs := race(locks, func(l lock.Interface) error { return l.Create(ctx, NewRecord(l.Identity(), 1)) })
	winner := oneWinner(t, "create", locks, errs)
	for _, l := range locks {
		if got := mustGet(t, ctx, l); got.HolderIdentity != winner {
			t.Errorf("%s reads holder %q, want the winner %q", l.Identity(), got.HolderIdentity, winner)
		}
	}
}

func (s *suite) testUpdateRaceHasOneWinner(t *testing.T) {
	ctx := s.raceCtx(t)
	name := Name(t)
	mustCreate(t, ctx, s.h.NewLock(t, name, "seed"), NewRecord("", 1))
	locks := make([]lock.Interface, s.o.Racers)
	for i := range locks {
		locks[i] = s.h.NewLock(t, name, "racer-"+string(rune('a'+i)))
		mustGet(t, ctx, locks[i])
	}
	errs := race(locks, func(l lock.Interface) error { return l.Update(ctx, NewRecord(l.Identity(), 2)) })
	winner := oneWinner(t, "update", locks, errs)
	if got := mustGet(t, ctx, locks[0]); got.HolderIdentity != winner {
		t.Fatalf("holder = %q, want the winner %q", got.HolderIdentity, winner)
	}
}

// oneWinner checks that exactly one racer's write (verb) succeeded and that
// every loser got a conflict, and returns the winner's identity.
func oneWinner(t *testing.T, verb string, locks []lock.Interface, errs []error) string {
	t.Helper()
	winner := ""
	for i, err := range errs {
		switch {
		case err == nil:
			if winner != "" {
				t.Fatalf("both %s and %s won the %s race", winner, locks[i].Identity(), verb)
			}
			winner = locks[i].Identity()
		case !lock.IsConflict(err):
			t.Errorf("%s lost the %s race with %v; lock.IsConflict is false", locks[i].Identity(), verb, err)
		}
	}
	if winner == "" {
		t.Fatalf("no racer won the %s race", verb)
	}
	return winner
}

// race runs f for every lock at once and returns the errors in order.
func race(locks []lock.Interface, f func(lock.Interface) error) []error {
	errs := make([]error, len(locks))
	var start, done sync.WaitGroup
	start.Add(1)
	for i, l := range locks {
		done.Add(1)
		go func() {
			defer done.Done()
			start.Wait()
			errs[i] = f(l)
		}()
	}
	start.Done()
	done.Wait()
	return errs
}

func (s *suite) testStaleUpdateLoses(t *testing.T) {
	ctx := s.ctxFor(t, 11)
	name := Name(t)
	a, b := s.h.NewLock(t, name, "a"), s.h.NewLock(t, name, "b")
	mustCreate(t, ctx, a, NewRecord("a", 1))
	// A leader renews from the version it wrote, without reading first.
	for i := 0; i < 3; i++ {
		if err := a.Update(ctx, NewRecord("a", 1)); err != nil {
			t.Fatalf("renew %d from the written version: %v", i, err)
		}
	}
	mustGet(t, ctx, b)
	if err := a.Update(ctx, NewRecord("a", 1)); err != nil {
		t.Fatalf("renew after another reader's Get: %v", err)
	}
	err := b.Update(ctx, NewRecord("b", 2))
	if err == nil {
		t.Fatal("Update with a stale version succeeded: no compare-and-swap")
	}
	if !lock.IsConflict(err) {
		t.Fatalf("stale Update: lock.IsConflict(%v) = false", err)
	}
	if !apierrors.IsConflict(err) && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("stale Update: apierrors.IsConflict(%v) = false; client-go cannot tell a lost race", err)
	}
	if got := mustGet(t, ctx, b); got.HolderIdentity != "a" {
		t.Fatalf("holder = %q after a lost race, want %q", got.HolderIdentity, "a")
	}
	if err := b.Update(ctx, NewRecord("b", 2)); err != nil {
		t.Fatalf("Update after a fresh Get: %v", err)
	}
	if err := a.Update(ctx, NewRecord("a", 1)); !lock.IsConflict(err) {
		t.Fatalf("the deposed holder's renew returned %v, want a conflict", err)
	}
	if got := mustGet(t, ctx, a); got.HolderIdentity != "b" || got.LeaderTransitions != 2 {
		t.Fatalf("record = %+v, want holder b with 2 transitions", got)
	}
}

func (s *suite) testRecordRoundTrips(t *testing.T) {
	ctx := s.ctxFor(t, 3)
	name := Name(t)
	a := s.h.NewLock(t, name, "a")
	want := NewRecord("a", 7)
	want.LeaseDurationSeconds = 42
	want.AcquireTime = metav1.NewTime(want.AcquireTime.Add(-time.Hour))
	mustCreate(t, ctx, a, want)
	got := mustGet(t, ctx, s.h.NewLock(t, name, "b"))
	if got.HolderIdentity != want.HolderIdentity || got.LeaseDurationSeconds != want.LeaseDurationSeconds ||
		got.LeaderTransitions != want.LeaderTransitions ||
		!got.AcquireTime.Equal(&want.AcquireTime) || !got.RenewTime.Equal(&want.RenewTime) {
		t.Fatalf("read back %+v, want %+v", got, want)
	}
}

// The elector marks a record whose writer does not lead yet (a claim) by
// leaving AcquireTime empty; the store must keep it empty, and keep
// RenewTime, so that other candidates recognise the claim.
func (s *suite) testClaimRoundTrips(t *testing.T) {
	ctx := s.ctxFor(t, 6)
	name := Name(t)
	a := s.h.NewLock(t, name, "a")
	claim := NewRecord("a", 3)
	claim.AcquireTime = metav1.Time{}
	mustCreate(t, ctx, a, claim)
	b := s.h.NewLock(t, name, "b")
	got := mustGet(t, ctx, b)
	if !got.AcquireTime.IsZero() || !got.RenewTime.Equal(&claim.RenewTime) || got.HolderIdentity != "a" || got.LeaderTransitions != 3 {
		t.Fatalf("read back %+v, want %+v (AcquireTime empty)", got, claim)
	}
	confirmed := claim
	confirmed.AcquireTime = metav1.NewTime(claim.RenewTime.Add(time.Second))
	confirmed.RenewTime = confirmed.AcquireTime
	if err := a.Update(ctx, confirmed); err != nil {
		t.Fatalf("Update confirming the claim: %v", err)
	}
	// Read through a new handle: this checks what the store keeps, not
	// how soon a cache sees a renewal (a caching follower may serve the
	// claim for a while, though for StaleReads at most after a new Get).
	c := s.h.NewLock(t, name, "c")
	deadline := time.Now().Add(s.o.StaleReads + 5*time.Second)
	for {
		got := mustGet(t, ctx, c)
		if got.AcquireTime.Equal(&confirmed.AcquireTime) {
			break
		}
		if !got.AcquireTime.IsZero() || time.Now().After(deadline) {
			t.Fatalf("read back %+v after the confirmation (StaleReads %v), want AcquireTime %v", got, s.o.StaleReads, confirmed.AcquireTime)
		}
		time.Sleep(20 * time.Millisecond) // polling a cache's expiry, as an elector would
	}
}

func (s *suite) testCorruptRecordIsErrorAndKept(t *testing.T) {
	ctx := s.ctxFor(t, 6)
	name := Name(t)
	a := s.h.NewLock(t, name, "a")
	mustCreate(t, ctx, a, NewRecord("a", 1))
	s.h.Corrupt(t, name)
	corrupt := s.h.Stored(t, name)
	if len(corrupt) == 0 {
		t.Fatal("harness stored nothing when corrupting")
	}
	b := s.h.NewLock(t, name, "b")
	_, _, err := b.Get(ctx)
	if err == nil {
		t.Fatal("Get of a corrupt record succeeded")
	}
	if !errors.Is(err, lock.ErrCorrupt) {
		t.Errorf("Get of a corrupt record: %v does not wrap lock.ErrCorrupt", err)
	}
	if !strings.Contains(err.Error(), b.Describe()) {
		t.Errorf("corrupt-record error %q does not name the object %q", err, b.Describe())
	}
	if lock.IsNotFound(err) {
		t.Errorf("corrupt record reported as not found (%v): a caller would recreate it", err)
	}
	// Neither the old holder's renew nor a create may overwrite it.
	if err := a.Update(ctx, NewRecord("a", 1)); err == nil {
		t.Error("the holder's renew overwrote a corrupt record")
	}
	if err := b.Update(ctx, NewRecord("b", 2)); err == nil {
		t.Error("Update after a failed Get overwrote a corrupt record")
	}
	if err := b.Create(ctx, NewRecord("b", 2)); err == nil {
		t.Error("Create overwrote a corrupt record")
	}
	if got := s.h.Stored(t, name); string(got) != string(corrupt) {
		t.Fatalf("corrupt record was overwritten: now %q", got)
	}
}

func (s *suite) testCancelledContextIsHonoured(t *testing.T) {
	ctx := s.ctx(t)
	name := Name(t)
	a := s.h.NewLock(t, name, "a")
	mustCreate(t, ctx, a, NewRecord("a", 1))
	before := s.h.Stored(t, name)
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := a.Get(cancelled); err == nil {
		t.Error("Get with a cancelled context succeeded")
	}
	if err := a.Update(cancelled, NewRecord("a", 5)); err == nil {
		t.Error("Update with a cancelled context succeeded")
	}
	if err := s.h.NewLock(t, Name(t), "b").Create(cancelled, NewRecord("b", 1)); err == nil {
		t.Error("Create with a cancelled context succeeded")
	}
	if got := s.h.Stored(t, name); string(got) != string(before) {
		t.Fatalf("a call with a cancelled context changed the record to %q", got)
	}
}

func (s *suite) testBlockedStoreTimesOut(t *testing.T) {
	blocker, ok := s.h.(Blocker)
	if !ok {
		t.Skip("harness cannot block its store")
	}
	ctx := s.ctx(t)
	name := Name(t)
	a := s.h.NewLock(t, name, "a")
	mustCreate(t, ctx, a, NewRecord("a", 1))
	unblock := blocker.Block(t, name)
	defer unblock()
	calls := map[string]func(context.Context) error{
		"Get":    func(c context.Context) error { _, _, err := a.Get(c); return err },
		"Update": func(c context.Context) error { return a.Update(c, NewRecord("a", 1)) },
	}
	for _, op := range []string{"Get", "Update"} {
		start := time.Now()
		callCtx, cancel := context.WithTimeout(ctx, s.o.CallTimeout)
		err := calls[op](callCtx)
		cancel()
		if err == nil {
			t.Errorf("%s on a blocked store succeeded", op)
		}
		if took := time.Since(start); took > s.o.Wait {
			t.Errorf("%s on a blocked store took %v; its context allowed %v", op, took, s.o.CallTimeout)
		}
	}
	unblock()
	// The store works again; the handle may need a fresh read after an
	// uncertain write.
	mustGet(t, ctx, a)
	if err := a.Update(ctx, NewRecord("a", 1)); err != nil {
		t.Fatalf("Update after the store came back: %v", err)
	}
}

func (s *suite) testWatcherSignalsOtherWriter(t *testing.T) {
	ctx := s.ctxFor(t, 11)
	name := Name(t)
	a := s.h.NewLock(t, name, "a")
	w := capability[lock.Watcher](t, a)
	mustCreate(t, ctx, a, NewRecord("a", 1))
	watchCtx, stop := context.WithCancel(ctx)
	changes := w.Changes(watchCtx)
	b := s.h.NewLock(t, name, "b")
	for i := 0; i < 3; i++ {
		// Drain signals from earlier writes (and the watch's start), then
		// check that this write is seen.
		drain(changes)
		rec := mustGet(t, ctx, b)
		rec.RenewTime = metav1.NewTime(rec.RenewTime.Add(time.Duration(i+1) * time.Second))
		if err := b.Update(ctx, *rec); err != nil {
			t.Fatalf("Update %d: %v", i, err)
		}
		if !waitSignal(changes, s.o.Wait) {
			t.Fatalf("no change signal within %v of another writer's update %d", s.o.Wait, i)
		}
		if got := mustGet(t, ctx, a); !got.RenewTime.Equal(&rec.RenewTime) {
			t.Fatalf("after a signal, Get reads renew time %v, want %v", got.RenewTime, rec.RenewTime)
		}
	}
	stop()
	deadline := time.After(s.o.Wait)
	for {
		select {
		case _, open := <-changes:
			if !open {
				return
			}
		case <-deadline:
			t.Fatalf("Changes channel still open %v after its context ended", s.o.Wait)
		}
	}
}

// testWatcherSignalsWriteRightAfterSubscribing writes the moment Changes
// has returned, before the watch's own goroutines may have run: every
// change after Changes returns must be signalled (a watcher that takes its
// baseline late would count the write as its starting state and stay
// silent). It subscribes afresh each round, with a write ready to go.
func (s *suite) testWatcherSignalsWriteRightAfterSubscribing(t *testing.T) {
	const rounds = 10
	ctx, cancel := context.WithTimeout(context.Background(), rounds*s.o.Wait)
	defer cancel()
	name := Name(t)
	a := s.h.NewLock(t, name, "a")
	w := capability[lock.Watcher](t, a)
	b := s.h.NewLock(t, name, "b")
	mustCreate(t, ctx, b, NewRecord("b", 1))
	for i := 0; i < rounds; i++ {
		mustGet(t, ctx, a)
		rec := mustGet(t, ctx, b)
		rec.RenewTime = metav1.NewTime(rec.RenewTime.Add(time.Duration(i+1) * time.Second))
		watchCtx, stop := context.WithCancel(ctx)
		changes := w.Changes(watchCtx)
		if err := b.Update(ctx, *rec); err != nil {
			stop()
			t.Fatalf("Update %d: %v", i, err)
		}
		// A watcher may signal at its start as well (spurious signals
		// are allowed): look until a Get shows the write, taking only
		// signals as the cue to look.
		deadline := time.Now().Add(s.o.Wait)
		for {
			left := time.Until(deadline)
			if left <= 0 || !waitSignal(changes, left) {
				stop()
				t.Fatalf("round %d: no change signal within %v for a write made right after Changes returned", i, s.o.Wait)
			}
			if got := mustGet(t, ctx, a); got.RenewTime.Equal(&rec.RenewTime) {
				break
			}
		}
		stop()
	}
}

func drain(ch <-chan struct{}) {
	for {
		select {
		case <-ch:
		default:
			return
		}
	}
}

func waitSignal(ch <-chan struct{}, d time.Duration) bool {
	select {
	case _, open := <-ch:
		return open
	case <-time.After(d):
		return false
	}
}

func (s *suite) testReleaseThenReacquire(t *testing.T) {
	ctx := s.ctxFor(t, 14)
	name := Name(t)
	a, b := s.h.NewLock(t, name, "a"), s.h.NewLock(t, name, "b")
	mustCreate(t, ctx, a, NewRecord("a", 1))
	mustGet(t, ctx, b)
	// Release as client-go does: an empty holder, the term kept.
	released := NewRecord("", 1)
	released.LeaseDurationSeconds = 1
	if err := a.Update(ctx, released); err != nil {
		t.Fatalf("release: %v", err)
	}
	// b's version is stale: it must read the release before taking over.
	if err := b.Update(ctx, NewRecord("b", 2)); !lock.IsConflict(err) {
		t.Fatalf("take-over from a stale read returned %v, want a conflict", err)
	}
	if got := mustGet(t, ctx, b); got.HolderIdentity != "" || got.LeaderTransitions != 1 {
		t.Fatalf("released record reads %+v, want no holder and 1 transition", got)
	}
	if err := b.Update(ctx, NewRecord("b", 2)); err != nil {
		t.Fatalf("take-over after release: %v", err)
	}
	if got := mustGet(t, ctx, a); got.HolderIdentity != "b" || got.LeaderTransitions != 2 {
		t.Fatalf("after re-acquisition the record reads %+v, want holder b, 2 transitions", got)
	}
	// And a can take it back the same way.
	released = NewRecord("", 2)
	if err := b.Update(ctx, released); err != nil {
		t.Fatalf("second release: %v", err)
	}
	if s.o.StaleReads > 0 {
		// a last read b's live lease, so its Get may still serve it: a
		// take-over from that stale version must lose, and a later Get must
		// see the release.
		releasedAt := time.Now()
		if got := mustGet(t, ctx, a); got.HolderIdentity != "" {
			if err := a.Update(ctx, NewRecord("a", 3)); !lock.IsConflict(err) {
				t.Fatalf("take-over from a cached read of a replaced record returned %v, want a conflict", err)
			}
		}
		for mustGet(t, ctx, a).HolderIdentity != "" {
			if since := time.Since(releasedAt); since > s.o.StaleReads+time.Second {
				t.Fatalf("Get still reads b's lease %v after b released it; StaleReads is %v", since, s.o.StaleReads)
			}
			time.Sleep(s.o.StaleReads / 20) // polling a cache's expiry, as an elector would
		}
	}
	mustGet(t, ctx, a)
	if err := a.Update(ctx, NewRecord("a", 3)); err != nil {
		t.Fatalf("re-acquire by the first holder: %v", err)
	}
}

// testDeletedRecord: an operator deletes the record under a holder and a
// follower that have both read it. Get must then report not-found (after
// at most StaleReads for a caching follower); an Update from the version
// read before the deletion must fail with not-found or conflict and must
// not write the record back (a blind re-create would restart the term
// under a live leader); and once the record is created again, that old
// version must still lose (no ABA on a version counter that restarts).
// testNeverWrittenHoldsUntilCreate checks a lock that proves a record new
// (lock.ErrNeverWritten): the elector leads at once on that proof, so a
// Create made on it must fail if a record was written meanwhile, even one
// deleted again (its leader may still be working), and the proof must be
// gone for good once a record was written.
func (s *suite) testNeverWrittenHoldsUntilCreate(t *testing.T) {
	d, ok := s.h.(Deleter)
	if !ok {
		t.Skip("harness cannot delete a record")
	}
	ctx := s.ctxFor(t, 7)
	name := Name(t)
	a, b := s.h.NewLock(t, name, "a"), s.h.NewLock(t, name, "b")
	_, _, err := a.Get(ctx)
	if !lock.IsNotFound(err) {
		t.Fatalf("Get of a new lock = %v, want not-found", err)
	}
	if !errors.Is(err, lock.ErrNeverWritten) {
		t.Skip("the lock does not prove a lock new (lock.ErrNeverWritten)")
	}
	mustCreate(t, ctx, b, NewRecord("b", 1))
	d.Delete(t, name)
	if err := a.Create(ctx, NewRecord("a", 1)); !lock.IsConflict(err) {
		t.Fatalf("Create after a Get that found no record was ever written, with a record written and deleted since: %v, want a conflict", err)
	}
	if got := s.h.Stored(t, name); got != nil {
		t.Fatalf("the refused Create stored %q", got)
	}
	for _, l := range []lock.Interface{a, b, s.h.NewLock(t, name, "c")} {
		if _, _, err := l.Get(ctx); !lock.IsNotFound(err) || errors.Is(err, lock.ErrNeverWritten) {
			t.Errorf("%s: Get after a record was written and deleted = %v, want a plain not-found", l.Identity(), err)
		}
	}
}

func (s *suite) testDeletedRecord(t *testing.T) {
	d, ok := s.h.(Deleter)
	if !ok {
		t.Skip("harness cannot delete a record")
	}
	ctx := s.ctxFor(t, 12)
	name := Name(t)
	a, b := s.h.NewLock(t, name, "a"), s.h.NewLock(t, name, "b")
	mustCreate(t, ctx, a, NewRecord("a", 1))
	mustGet(t, ctx, b)
	d.Delete(t, name)
	if got := s.h.Stored(t, name); got != nil {
		t.Fatalf("harness did not delete the record: %q", got)
	}
	for _, l := range []lock.Interface{a, b} {
		// A cache may hide the deletion for StaleReads; a watch for a
		// moment. Either way well within the record's 15s lease.
		deadline := time.Now().Add(s.o.StaleReads + 5*time.Second)
		for {
			rec, _, err := l.Get(ctx)
			if lock.IsNotFound(err) {
				if !apierrors.IsNotFound(err) {
					t.Errorf("%s: Get of a deleted record: apierrors.IsNotFound(%v) = false", l.Identity(), err)
				}
				if errors.Is(err, lock.ErrNeverWritten) {
					t.Errorf("%s: Get of a deleted record = %v: a record was written; a candidate told so would lead at once beside the leader the record was deleted under", l.Identity(), err)
				}
				break
			}
			if err != nil {
				t.Fatalf("%s: Get of a deleted record returned %v, want not-found", l.Identity(), err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: Get still returns %+v %v after the record was deleted (StaleReads %v)", l.Identity(), rec, s.o.StaleReads+5*time.Second, s.o.StaleReads)
			}
			time.Sleep(20 * time.Millisecond) // polling a cache's expiry, as an elector would
		}
	}
	for _, l := range []lock.Interface{a, b} {
		err := l.Update(ctx, NewRecord(l.Identity(), 2))
		if err == nil {
			t.Fatalf("%s: Update of a deleted record succeeded", l.Identity())
		}
		if !lock.IsNotFound(err) && !lock.IsConflict(err) {
			t.Errorf("%s: Update of a deleted record returned %v, want not-found or conflict", l.Identity(), err)
		}
		if got := s.h.Stored(t, name); got != nil {
			t.Fatalf("%s: Update of a deleted record wrote it back: %q", l.Identity(), got)
		}
	}
	c := s.h.NewLock(t, name, "c")
	if err := c.Create(ctx, NewRecord("c", 2)); err != nil {
		t.Fatalf("Create after the deletion: %v", err)
	}
	for _, l := range []lock.Interface{a, b} {
		if err := l.Update(ctx, NewRecord(l.Identity(), 3)); !lock.IsConflict(err) {
			t.Fatalf("%s: Update from a version read before the deletion, after a re-create, returned %v, want a conflict", l.Identity(), err)
		}
	}
	if got := mustGet(t, ctx, c); got.HolderIdentity != "c" || got.LeaderTransitions != 2 {
		t.Fatalf("record = %+v after stale updates, want c's", got)
	}
}

// UpdateThenDeleteIsNotNew takes the record stored under name (a Get and
// an Update, as a leader would), deletes it through d, and fails t unless
// a new handle then finds a plain not-found: a record was written, so the
// lock is not new, however it was first written (a store that marks a
// lock written must do so at the latest at this Update, for records
// written before it made marks).
func UpdateThenDeleteIsNotNew(t *testing.T, h Harness, d Deleter, name string) {
	t.Helper()
	ctx := context.Background()
	l := h.NewLock(t, name, "a")
	rec := mustGet(t, ctx, l)
	if err := l.Update(ctx, NewRecord("a", rec.LeaderTransitions+1)); err != nil {
		t.Fatalf("Update: %v", err)
	}
	d.Delete(t, name)
	if _, _, err := h.NewLock(t, name, "fresh").Get(ctx); !lock.IsNotFound(err) || errors.Is(err, lock.ErrNeverWritten) {
		t.Fatalf("Get after the record was updated and deleted = %v, want a plain not-found (a deletion, not a new lock)", err)
	}
}

// testAgedNeverOverstatesAnAge checks lock.Aged against writes whose
// start the test knows: the elector dates a record back by its age, so an
// age longer than the time since the write began would let a candidate
// take a lease that is still held. Each write has a term of its own, so
// that a cached (stale) read is checked against its own write's start.
func (s *suite) testAgedNeverOverstatesAnAge(t *testing.T) {
	ctx := s.ctxFor(t, 14)
	name := Name(t)
	a, b := s.h.NewLock(t, name, "a"), s.h.NewLock(t, name, "b")
	capability[lock.Aged](t, b)
	began := map[int]time.Time{} // term → when its write began
	write := func(l lock.Interface, term int, create bool) {
		t.Helper()
		began[term] = time.Now()
		var err error
		if create {
			err = l.Create(ctx, NewRecord(l.Identity(), term))
		} else {
			err = l.Update(ctx, NewRecord(l.Identity(), term))
		}
		if err != nil {
			t.Fatalf("%s: writing term %d: %v", l.Identity(), term, err)
		}
	}
	known := 0
	read := func(l lock.Interface, what string) {
		t.Helper()
		rec, raw, err := l.Get(ctx)
		if err != nil {
			t.Fatalf("%s: Get: %v", l.Identity(), err)
		}
		age, ok := l.(lock.Aged).Age(raw)
		since := time.Since(began[rec.LeaderTransitions])
		if !ok {
			return
		}
		known++
		if age < 0 || age > since {
			t.Errorf("%s: %s: Age = %v, but the write of term %d began %v ago: a candidate would take a held lease early", l.Identity(), what, age, rec.LeaderTransitions, since)
		}
	}
	write(a, 1, true)
	read(b, "another's new record")
	read(a, "its own new record")
	for term := 2; term <= 4; term++ {
		write(a, term, false)
		read(b, fmt.Sprintf("another's renewal %d", term))
	}
	// The same record read later: older now, and no older than its write.
	time.Sleep(100 * time.Millisecond) // letting the record age, not synchronising
	read(b, "another's renewal, read again later")
	// b takes over from a read of a's last renewal (a caching lock may
	// serve an older one for StaleReads).
	if !poll.Within(s.o.StaleReads+s.o.Wait, func() bool { return mustGet(t, ctx, b).LeaderTransitions == 4 }) {
		t.Fatalf("b does not read a's renewal of term 4 within %v", s.o.StaleReads+s.o.Wait)
	}
	write(b, 5, false)
	read(b, "its own take-over")
	read(a, "the record that replaced its own")
	t.Logf("%d of 9 reads reported an age", known)
}

// testWatchStateFollowsTheStore checks lock.WatchState: no watch before
// anyone subscribed; a watch once subscribed; and, where the harness can
// stop the store, the watch reported down (with a signal, so receivers
// learn to poll) and back, signalling writes again.
func (s *suite) testWatchStateFollowsTheStore(t *testing.T) {
	ctx := s.ctxFor(t, 8)
	name := Name(t)
	l := s.h.NewLock(t, name, "a")
	ws := capability[lock.WatchState](t, l)
	if ws.Watching() {
		t.Error("Watching before anyone subscribed to Changes")
	}
	mustCreate(t, ctx, l, NewRecord("a", 1))
	changes := ws.Changes(ctx)
	poll.Until(t, "the watch to be established", s.o.Wait, ws.Watching)
	blocker, ok := s.h.(Blocker)
	if !ok {
		return
	}
	drain(changes)
	unblock := blocker.Block(t, name)
	defer unblock()
	poll.Until(t, "Watching to report the watch down while the store does not answer", s.o.Wait, func() bool { return !ws.Watching() })
	if !waitSignal(changes, s.o.Wait) {
		t.Fatalf("no signal within %v of the watch going down: a receiver would not learn to poll", s.o.Wait)
	}
	unblock()
	poll.Until(t, "the watch to come back", s.o.Wait, ws.Watching)
	// Back, it signals a write again.
	drain(changes)
	b := s.h.NewLock(t, name, "b")
	rec := mustGet(t, ctx, b)
	rec.RenewTime = metav1.NewTime(rec.RenewTime.Add(time.Second))
	if err := b.Update(ctx, *rec); err != nil {
		t.Fatalf("Update once the store answers again: %v", err)
	}
	if !waitSignal(changes, s.o.Wait) {
		t.Fatalf("no change signal within %v of another writer's update, with Watching reporting the watch back", s.o.Wait)
	}
}

// testReadinessChecker checks lock.ReadinessChecker: a name fit for the
// path /readyz/<name>, the same on every handle, and a handle NewLock
// returned on a working store that becomes ready.
func (s *suite) testReadinessChecker(t *testing.T) {
	name := Name(t)
	a := s.h.NewLock(t, name, "a")
	rc := capability[lock.ReadinessChecker](t, a)
	check := rc.ReadinessName()
	if check == "" || strings.Trim(check, "abcdefghijklmnopqrstuvwxyz0123456789-_.") != "" {
		t.Errorf("ReadinessName() = %q, want a name of lower-case letters, digits, '-', '_' or '.' for /readyz/<name>", check)
	}
	if other := s.h.NewLock(t, name, "b").(lock.ReadinessChecker).ReadinessName(); other != check {
		t.Errorf("ReadinessName() differs between handles: %q and %q", check, other)
	}
	if !poll.Within(s.o.Wait, func() bool { return rc.Ready() == nil }) {
		t.Fatalf("a handle on a working store is not ready after %v: %v", s.o.Wait, rc.Ready())
	}
}

// testDurationRulesAcceptTheDefaults checks lock.DurationRules: a store's
// rules never refuse the Kubernetes defaults (15s, 10s, 2s), which a zero
// leaderelection.Option runs with, and a refusal names a duration.
func (s *suite) testDurationRulesAcceptTheDefaults(t *testing.T) {
	r := capability[lock.DurationRules](t, s.h.NewLock(t, Name(t), "a"))
	if err := r.ValidateDurations(15*time.Second, 10*time.Second, 2*time.Second); err != nil {
		t.Errorf("ValidateDurations(15s, 10s, 2s) = %v, want the Kubernetes defaults accepted", err)
	}
	// Whatever else a store refuses, it says which duration to change.
	if err := r.ValidateDurations(time.Hour*24*365*100, 10*time.Second, 2*time.Second); err != nil &&
		!strings.Contains(err.Error(), "LeaseDuration") && !strings.Contains(err.Error(), "RenewDeadline") && !strings.Contains(err.Error(), "RetryPeriod") {
		t.Errorf("ValidateDurations(100 years, 10s, 2s) = %v, want an error naming the duration", err)
	}
}

// capability returns l as C, one of package lock's optional capabilities,
// or skips t: a lock need not have it.
func capability[C any](t *testing.T, l lock.Interface) C {
	t.Helper()
	c, ok := l.(C)
	if !ok {
		t.Skipf("lock does not implement %v", reflect.TypeFor[C]())
	}
	return c
}
