package leaderelection

import (
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/b3df926d/leaderelection/healthz"
)

// vitals is the elector's own health, apart from anything it knows of the
// lock: the heartbeat of its loop and the callbacks running now (the
// watchdog's /livez check), and the outcome of its store calls (/readyz and
// /status). It has its own lock, so that reading it never waits for the
// elector.
type vitals struct {
	now           func() time.Time // the elector's clock; never called under mu
	renewDeadline time.Duration
	stopTimeout   time.Duration

	mu            sync.Mutex
	beatAt        time.Time              // the loop last came round
	beatDue       time.Time              // ... and must come round again by then
	calls         map[string]pendingCall // callbacks running now
	storeErr      error                  // the last store call failed (nil: it succeeded)
	storeErrSince time.Time
	storeErrors   int64 // failed store calls, for the error counter
}

// pendingCall is a user callback that is running: since when, and by when
// it must return (zero: no bound yet).
type pendingCall struct{ since, due time.Time }

// status returns the vitals' part of the elector's Status.
func (v *vitals) status() healthz.Status {
	v.mu.Lock()
	defer v.mu.Unlock()
	var calls []healthz.Callback
	for name, c := range v.calls {
		calls = append(calls, healthz.Callback{Name: name, Since: c.since, Due: c.due})
	}
	slices.SortFunc(calls, func(a, b healthz.Callback) int { return strings.Compare(a.Name, b.Name) })
	var storeErr string
	if v.storeErr != nil {
		storeErr = v.storeErr.Error()
	}
	return healthz.Status{
		Heartbeat:       v.beatAt,
		HeartbeatDue:    v.beatDue,
		Callbacks:       calls,
		StoreError:      storeErr,
		StoreErrorSince: v.storeErrSince,
		StoreErrors:     v.storeErrors,
	}
}

// beat stamps the heartbeat the watchdog reads: the loop has come round,
// and will again within wait plus one store call (bounded by
// RenewDeadline).
func (v *vitals) beat(wait time.Duration) {
	now := v.now()
	v.mu.Lock()
	v.beatAt, v.beatDue = now, now.Add(max(wait, 0)+v.renewDeadline)
	v.mu.Unlock()
}

// loopEnded records that the loop has ended: nothing is due any more.
// Callbacks still running stay on the watchdog.
func (v *vitals) loopEnded() {
	v.mu.Lock()
	v.beatDue = time.Time{}
	v.mu.Unlock()
}

// callbackStarted records that the named callback runs, and must return by
// due (zero: no bound yet; see callbackDue). end removes the record.
func (v *vitals) callbackStarted(name string, due time.Time) (end func()) {
	now := v.now()
	if due.IsZero() && name != "OnStartedLeading" {
		due = now.Add(v.stopTimeout)
	}
	v.mu.Lock()
	v.calls[name] = pendingCall{since: now, due: due}
	v.mu.Unlock()
	return func() {
		v.mu.Lock()
		delete(v.calls, name)
		v.mu.Unlock()
	}
}

// callbackDue sets when a running callback must return by.
func (v *vitals) callbackDue(name string, due time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if c, ok := v.calls[name]; ok {
		c.due = due
		v.calls[name] = c
	}
}

// storeFailed and storeOK record the outcome of the last store call, for
// /readyz and /status.
func (v *vitals) storeFailed(err error) {
	now := v.now()
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.storeErr == nil {
		v.storeErrSince = now
	}
	v.storeErr = err
	v.storeErrors++
}

func (v *vitals) storeOK() {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.storeErr, v.storeErrSince = nil, time.Time{}
}
