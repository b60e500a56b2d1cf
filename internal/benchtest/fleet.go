// Package benchtest holds what the benchmarks under bench/ share: a fleet of
// candidates of one elector implementation, the graceful hand-over and
// crash fail-over measurements, percentiles and table cells, the timing
// flags, and the Lease electors (this module's and client-go's) run against
// a real kube-apiserver, so that every backend's benchmark can put
// client-go on the same table without a copy of its harness.
package benchtest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"
)

// Timing are the elector durations of one measurement.
type Timing struct {
	LeaseDuration, RenewDeadline, RetryPeriod time.Duration
}

func (t Timing) String() string {
	return fmt.Sprintf("%v/%v/%v", t.LeaseDuration, t.RenewDeadline, t.RetryPeriod)
}

// Start starts candidate id. led is called (with id) when it starts
// leading. stop ends it and waits until it has finished: with release the
// candidate releases the lock (a graceful stop); without, it must vanish
// as a crashed process does, renewing and releasing nothing.
type Start func(tb testing.TB, id string, release bool, led func(id string)) (stop func())

// Fleet is a set of candidates of one implementation on one record.
type Fleet struct {
	tb      testing.TB
	name    string
	start   Start
	release bool
	within  time.Duration
	gen     int

	// Restart names the candidate that replaces a stopped one: by default
	// a fresh identity (a restarted client-go candidate would otherwise
	// re-acquire its own unexpired lease at once); a backend whose
	// candidates have stable names (gossip voters) returns id itself.
	Restart func(id string) string

	mu      sync.Mutex
	running map[string]func()
	leaders chan Leadership
}

// Leadership is one candidate's start of leading.
type Leadership struct {
	ID string
	At time.Time
}

// NewFleet returns an empty fleet; add candidates with Add. release makes
// Stop graceful; within bounds NextLeader.
func NewFleet(tb testing.TB, name string, start Start, release bool, within time.Duration) *Fleet {
	f := &Fleet{tb: tb, name: name, start: start, release: release, within: within,
		running: map[string]func(){}, leaders: make(chan Leadership, 100)}
	f.Restart = func(string) string { return f.NewID() }
	return f
}

// NewID returns a fresh identity: the fleet's name and a counter.
func (f *Fleet) NewID() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gen++
	return fmt.Sprintf("%s-%d", f.name, f.gen)
}

// Add starts candidate id.
func (f *Fleet) Add(id string) {
	stop := f.start(f.tb, id, f.release, func(id string) {
		f.leaders <- Leadership{ID: id, At: time.Now()}
	})
	f.mu.Lock()
	f.running[id] = stop
	f.mu.Unlock()
}

// Stop stops candidate id (gracefully or as a crash: see NewFleet).
func (f *Fleet) Stop(id string) {
	f.mu.Lock()
	stop := f.running[id]
	delete(f.running, id)
	f.mu.Unlock()
	if stop != nil {
		stop()
	}
}

// IDs returns the running candidates.
func (f *Fleet) IDs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ids := make([]string, 0, len(f.running))
	for id := range f.running {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// StopAll stops every candidate.
func (f *Fleet) StopAll() {
	for _, id := range f.IDs() {
		f.Stop(id)
	}
}

// Current returns the latest start of leading the fleet has seen, leader
// or a later one still queued (leadership may have moved by itself, on a
// machine too loaded to renew in time).
func (f *Fleet) Current(leader Leadership) Leadership {
	for {
		select {
		case l := <-f.leaders:
			leader = l
		default:
			return leader
		}
	}
}

// NextLeader waits for the next start of leading.
func (f *Fleet) NextLeader() Leadership {
	f.tb.Helper()
	select {
	case l := <-f.leaders:
		return l
	case <-time.After(f.within):
		f.tb.Fatalf("%s: no leader within %v", f.name, f.within)
		return Leadership{}
	}
}

// Handovers makes the leader stop gracefully n times (the fleet must
// release) and returns each time from the stop to the next leader's
// OnStartedLeading, and the last leader. The stopped candidate is replaced
// (Restart) after each; settle lets it start following.
func (f *Fleet) Handovers(leader Leadership, n int, settle time.Duration) ([]time.Duration, Leadership) {
	var out []time.Duration
	for range n {
		leader = f.Current(leader)
		start := time.Now()
		f.Stop(leader.ID)
		next := f.NextLeader()
		out = append(out, next.At.Sub(start))
		f.Add(f.Restart(leader.ID))
		leader = next
		time.Sleep(settle) // let the new follower settle; not synchronisation
	}
	return out, leader
}

// Crashes makes the leader vanish n times without releasing (the fleet
// must not release) and returns each fail-over beyond the lease: from the
// RenewTime of the crashed leader's last renewal that took effect
// (lastRenew: asked with the crashed leader's id once it has stopped, it
// returns that time given the next leader's id) to the next leader's
// OnStartedLeading, minus lease. Before each crash the leader holds for
// settle, so it has renewed at least once, and then for a random part of
// settle/2 (a RetryPeriod when settle is two), so that crashes land at
// random points of its renew cycle as real ones do, not always just after
// a renewal began.
func (f *Fleet) Crashes(leader Leadership, n int, lease, settle time.Duration, lastRenew func(crashed string) func(next string) time.Time) ([]time.Duration, Leadership) {
	var out []time.Duration
	for range n {
		time.Sleep(settle + rand.N(settle/2)) // let the leader renew at least once; not synchronisation
		leader = f.Current(leader)
		f.Stop(leader.ID)
		renewed := lastRenew(leader.ID)
		next := f.NextLeader()
		out = append(out, next.At.Sub(renewed(next.ID))-lease)
		f.Add(f.Restart(leader.ID))
		leader = next
	}
	return out, leader
}
