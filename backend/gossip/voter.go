package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
	"github.com/b3df926d/leaderelection/lock"
)

// sole reports whether this voter's acceptor may answer: memberlist shows
// no other live process of its identity (transport.rivals), and the guard has
// released the acceptor since the last one showed up. See "Two live
// processes with one identity" in docs/backends/gossip.md.
func (l *Lock) sole() bool {
	return l.tr.rivals.Load() == 0 && l.tr.rivalGen.Load() == l.guarded.Load()
}

// guard holds this voter's acceptor while another live process of its
// identity shows (it answers nothing, nor recovers), and releases it once
// none does: the acceptor then starts over as after a restart (see
// casp.Acceptor.Release), since the other may have answered meanwhile.
func (l *Lock) guard() {
	defer l.wg.Done()
	var retry <-chan time.Time
	for {
		l.tr.mu.Lock()
		ch := l.tr.changed
		l.tr.mu.Unlock()
		if !l.guardStep() {
			retry = time.After(l.resend)
		}
		select {
		case <-l.stop:
			return
		case <-ch:
		case <-retry:
			retry = nil
		}
	}
}

// guardStep is one step of guard: it holds the acceptor if a rival has
// shown since the last release, and releases it if none is left. It
// reports false if the release failed (to be retried).
func (l *Lock) guardStep() bool {
	l.tr.mu.Lock() // rivalsLocked sets both under it
	gen, rivals := l.tr.rivalGen.Load(), l.tr.rivals.Load()
	l.tr.mu.Unlock()
	if gen == l.guarded.Load() {
		return true
	}
	l.accMu.Lock()
	l.acc.Hold()
	l.accMu.Unlock()
	if rivals != 0 {
		return true
	}
	l.propMu.Lock()
	above := l.prop.Last()
	l.propMu.Unlock()
	l.accMu.Lock()
	err := l.acc.Release(nowMillis(), above)
	ready := l.acc.Ready()
	if err == nil && !ready {
		l.recoverLocked()
	}
	l.accMu.Unlock()
	if err != nil {
		l.log.Error(err, "Could not release the acceptor after the other process of this identity went; retrying")
		return false
	}
	l.guarded.Store(gen)
	l.log.Info("No other process of this identity is alive: the acceptor starts over", "answers", ready)
	return true
}

// Ready reports nil once this candidate can take part: a voter has its
// record (restored from StateDir, recovered from the other voters, or the
// register re-initialised). leaderelection.Run and NewHealthServer serve it
// as the /readyz check "gossip" (lock.ReadinessChecker), so that a rolling
// restart waits for each voter to recover before restarting the next.
func (l *Lock) Ready() error {
	if l.acc == nil {
		return nil
	}
	l.accMu.Lock()
	defer l.accMu.Unlock()
	if l.acc.Held() || !l.sole() {
		return fmt.Errorf("%s: voter %s does not answer while another live process claims its identity", l.desc, l.s.Identity)
	}
	if !l.acc.Ready() {
		return fmt.Errorf("%s: voter %s is recovering its record from the other voters", l.desc, l.s.Identity)
	}
	return nil
}

// ReadinessName names Ready's check on /readyz: /readyz/gossip.
func (l *Lock) ReadinessName() string { return "gossip" }

var _ lock.ReadinessChecker = (*Lock)(nil)

// handle answers a request as this node's acceptor, or takes a push.
func (l *Lock) handle(e *envelope) *envelope {
	switch e.Kind {
	case kindPush:
		if f := l.pushed.Load(); f != nil {
			(*f)(e)
		}
		var v casp.Value
		if err := json.Unmarshal(e.Payload, &v); err == nil {
			took := micros(e.Took)
			l.noteTook(took)
			// Pushed once chosen, so it began at least took before now.
			l.bound(v.Written, time.Now().Add(-took))
			l.propMu.Lock()
			if e.Gift != nil && l.prop.Adopt(*e.Gift) {
				// Before learn wakes the elector: its take-over
				// round spends the hand-over.
				l.log.V(4).Info("Adopted the release's prepare phase", "ballot", e.Gift.Ballot.String(), "from", e.From)
			}
			// The voters promised the push's ballot: this candidate's
			// next round starts above it instead of being refused.
			l.prop.Observe(v.Written)
			l.propMu.Unlock()
			l.learn(v, false, false)
		}
		return nil
	case kindPrepare, kindAccept, kindQuery:
	default:
		return nil
	}
	if l.acc == nil {
		return nil // not a voter
	}
	if !l.sole() {
		return nil // held (see guard)
	}
	var m casp.Message
	if err := json.Unmarshal(e.Payload, &m); err != nil {
		return nil
	}
	m.From = e.From
	l.accMu.Lock()
	r, err := l.acc.Handle(nowMillis(), m)
	if l.log.V(4).Enabled() {
		st := l.acc.State()
		rk := "none"
		if r != nil {
			rk = r.Kind.String() + "/" + r.Reason.String()
		}
		l.log.V(4).Info("Acceptor", "from", e.From, "kind", m.Kind.String(), "ballot", m.Ballot.String(), "inc", m.Incarnation, "promised", st.Promised.String(), "reply", rk, "err", err)
	}
	var age time.Duration
	if st := l.acc.State(); st.Value.Written != l.accWritten {
		// Accepted a new write now (or adopted it recovering): the write
		// began no later than this.
		l.accWritten, l.accSince = st.Value.Written, time.Now()
	}
	if r != nil && (r.Kind == casp.KindPromise || r.Kind == casp.KindReport) &&
		!r.Value.IsEmpty() && r.Value.Written == l.accWritten && !l.accSince.IsZero() {
		age = time.Since(l.accSince)
	}
	l.accMu.Unlock()
	if err != nil {
		if errors.Is(err, casp.ErrVoterHash) {
			l.m.refused.WithLabelValues("voters").Inc()
		}
		l.log.Error(err, "Could not answer", "from", e.From, "kind", e.Kind)
		return nil
	}
	if r == nil {
		return nil
	}
	payload, err := json.Marshal(r)
	if err != nil {
		return nil
	}
	if f := l.replied.Load(); f != nil {
		defer (*f)(kindOf(r.Kind), e.From)
	}
	return &envelope{Kind: kindOf(r.Kind), Ballot: r.Ballot, Age: age.Microseconds(), Payload: payload}
}
