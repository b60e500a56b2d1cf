package main

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// tenure is one (identity, term) seen leading, from the first /status that
// said so.
type tenure struct {
	id    string
	term  int64
	first time.Time
}

// observer polls every replica's /status and keeps what the campaign
// measures from the outside: who leads, every tenure, gaps with no leader,
// and any moment two live, unpaused replicas both lead.
type observer struct {
	c *campaign

	mu        sync.Mutex
	tenures   []tenure
	owners    map[int64]map[string]bool
	gapStart  time.Time // zero while someone leads
	longest   time.Duration
	longestAt time.Time
	overlaps  []string // two unpaused leaders at once
	stale     int      // a leader paused in its term still said it led while another did
	samples   int
	changed   chan struct{} // closed and replaced on every new tenure
}

func newObserver(c *campaign) *observer {
	return &observer{c: c, owners: map[int64]map[string]bool{}, changed: make(chan struct{})}
}

// sampleEvery is the observer's resolution for takeover times and gaps.
const sampleEvery = 20 * time.Millisecond

// poll calls round every sampleEvery until ctx ends.
func poll(ctx context.Context, round func(context.Context)) {
	t := time.NewTicker(sampleEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		round(ctx)
	}
}

type reading struct {
	r  *replica
	st status
}

func (o *observer) round(ctx context.Context) {
	now := time.Now()
	reps := o.c.live()
	var leading []reading
	for _, r := range reps {
		if r.paused.Load() {
			continue
		}
		if st, ok := r.status(ctx); ok && st.Leading {
			leading = append(leading, reading{r, st})
		}
	}
	// Two said they lead: read the earlier ones again. If i led in the same
	// term at both of its reads (a term is one unbroken interval), it led
	// while j, read in between, led too.
	var overlaps []string
	stale := 0
	if len(leading) > 1 {
		for i := 0; i < len(leading)-1; i++ {
			again, ok := leading[i].r.status(ctx)
			if !ok || !again.Leading || again.Term != leading[i].st.Term {
				continue
			}
			for _, j := range leading[i+1:] {
				if o.c.pausedIn(leading[i].r.id, leading[i].st.Term) || o.c.pausedIn(j.r.id, j.st.Term) {
					stale++
					continue
				}
				overlaps = append(overlaps, fmt.Sprintf("%s (term %d) and %s (term %d) both led at %s",
					leading[i].r.id, leading[i].st.Term, j.r.id, j.st.Term, now.Format(time.RFC3339Nano)))
			}
		}
	}

	o.mu.Lock()
	defer o.mu.Unlock()
	o.samples++
	o.overlaps = append(o.overlaps, overlaps...)
	o.stale += stale
	if len(leading) == 0 {
		if o.gapStart.IsZero() && len(o.tenures) > 0 {
			o.gapStart = now
		}
		return
	}
	if !o.gapStart.IsZero() {
		if gap := now.Sub(o.gapStart); gap > o.longest {
			o.longest, o.longestAt = gap, o.gapStart
		}
		o.gapStart = time.Time{}
	}
	for _, l := range leading {
		if o.owners[l.st.Term] == nil {
			o.owners[l.st.Term] = map[string]bool{}
		}
		o.owners[l.st.Term][l.r.id] = true
		last := len(o.tenures) - 1
		if last >= 0 && o.tenures[last].id == l.r.id && o.tenures[last].term == l.st.Term {
			continue
		}
		// A paused leader that woke up and still says it leads is not a
		// new tenure.
		if o.known(l.r.id, l.st.Term) {
			continue
		}
		o.tenures = append(o.tenures, tenure{id: l.r.id, term: l.st.Term, first: now})
		close(o.changed)
		o.changed = make(chan struct{})
	}
}

func (o *observer) known(id string, term int64) bool {
	for i := len(o.tenures) - 1; i >= 0 && i >= len(o.tenures)-8; i-- {
		if o.tenures[i].id == id && o.tenures[i].term == term {
			return true
		}
	}
	return false
}

// current returns the number of tenures so far and the last one.
func (o *observer) current() (int, tenure, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.tenures) == 0 {
		return 0, tenure{}, o.changed
	}
	return len(o.tenures), o.tenures[len(o.tenures)-1], o.changed
}

// tenureAt returns tenure i.
func (o *observer) tenureAt(i int) tenure {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.tenures[i]
}

// tenuresFrom returns the tenures after the first n.
func (o *observer) tenuresFrom(n int) []tenure {
	o.mu.Lock()
	defer o.mu.Unlock()
	if n >= len(o.tenures) {
		return nil
	}
	return slices.Clone(o.tenures[n:])
}

// waitTenure waits until there are more than n tenures, or until the
// deadline; it returns the first new one.
func (o *observer) waitTenure(n int, deadline time.Time) (tenure, bool) {
	for {
		count, _, ch := o.current()
		if count > n {
			return o.tenureAt(n), true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return tenure{}, false
		}
		select {
		case <-ch:
		case <-time.After(left):
		}
	}
}
