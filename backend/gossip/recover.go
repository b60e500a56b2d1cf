package gossip

import (
	"context"
	"time"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
)

// newElectionQuiet is how long, in resend intervals, a voter that started
// a new election answers only the others' recovery rounds
// (casp.Acceptor.NewElection), so that they follow it before a writer's
// round makes it an ordinary voter: a few recovery attempts (each at most
// 5 intervals: a round waits up to 4 for every answer, then one more),
// with room for a loaded machine (5 intervals were too short for 5 voters
// under -race on 2 busy cores).
const newElectionQuiet = 20

// recoverLoop runs this voter's recovery rounds until one is chosen (the
// acceptor then adopts its ballot and record and starts answering) or the
// register must be re-initialised: a majority of the voters, this one
// included, has been without its record for ReinitializeAfter, so no round
// could have succeeded, and any leader has stepped down, for that long. A
// new election skips the wait: this voter is blank and every other voter
// answered one of its rounds blank (casp.Acceptor.Blank: an empty StateDir, no
// part in any round that may write). A voter that is ready but holds
// nothing is not enough: the accepts of every write may have gone to a
// quorum without it, which has since lost its StateDirs (issue #23). The
// argument: docs/backends/gossip.md, "A new election".
func (l *Lock) recoverLoop() {
	defer l.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-l.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	origin := time.Now()
	clock := casp.ReinitClock{After: l.reinit} // runs while a majority has been recovering
	var tally *casp.RecoveryTally
	for attempt := 0; ; attempt++ {
		l.accMu.Lock()
		floor, known := l.acc.Floor()
		l.accMu.Unlock()
		// What this attempt's round heard: the decisions below are
		// casp's (RecoveryTally, ReinitClock), so that the tests'
		// simulation checks the same rules.
		if tally == nil {
			tally = casp.NewRecoveryTally(len(l.s.Voters))
		} else {
			tally = tally.Next() // blank answers count across this process's rounds
		}
		if known {
			actx, acancel := context.WithTimeout(ctx, 4*l.resend)
			l.rounds <- struct{}{}
			out, _, err := l.round(actx, func(now uint64) *casp.Round { return l.prop.Recover(now, floor) }, func(_ *envelope, m casp.Message) {
				tally.Add(m)
			}, nil)
			<-l.rounds
			acancel()
			if err == nil && out.Status == casp.Chosen {
				l.accMu.Lock()
				rerr := l.acc.Recover(out)
				l.accMu.Unlock()
				if rerr == nil {
					l.log.Info("Voter recovered its record from the other voters", "ballot", out.Ballot.String(), "version", out.Value.Token().String())
					l.learn(out.Value, true, false)
					return
				}
				l.log.Error(rerr, "Recovery round not usable; trying again")
			}
		}
		if ctx.Err() != nil {
			return
		}
		if tally.NewElection() {
			l.accMu.Lock()
			err := l.acc.NewElection(nowMillis(), uint64(newElectionQuiet*l.resend/time.Millisecond)) // refused unless this voter is blank too
			l.accMu.Unlock()
			if err == nil {
				l.log.Info("New election: every voter started with an empty StateDir and has taken part in no write; the register starts empty")
				l.hub.Notify() // an elector whose reads failed meanwhile reads again now
				return
			}
		}
		switch now := time.Since(origin); clock.Step(now, tally) {
		case casp.ReinitStarted:
			_, recovering := tally.Heard()
			l.log.Info("A majority of the voters is without its record (a full restart without StateDir?); the register is re-initialised if this lasts", "recovering", recovering+1, "after", l.reinit)
		case casp.ReinitNow:
			l.accMu.Lock()
			err := l.acc.Reinitialize()
			l.accMu.Unlock()
			if err == nil {
				l.m.reinits.Inc()
				running, _ := clock.Running(now)
				l.log.Error(nil, "RE-INITIALISED THE REGISTER: a majority of the voters restarted without their state and none has seen a quorum since; the record is forgotten and the election starts afresh (use Options.StateDir to keep terms across full restarts)",
					"recoveringFor", running.Round(time.Millisecond))
				l.hub.Notify()
				return
			}
		}
		t := time.NewTimer(l.resend)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// recoverLocked runs recoverLoop, unless it runs already, until the
// acceptor answers or the lock stops. accMu is held.
func (l *Lock) recoverLocked() {
	if l.recovering {
		return
	}
	l.recovering = true
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			l.wg.Add(1) // recoverLoop's
			l.recoverLoop()
			l.accMu.Lock()
			again := !l.acc.Ready()
			select {
			case <-l.stop:
				again = false
			default:
			}
			l.recovering = again
			l.accMu.Unlock()
			if !again {
				return
			}
		}
	}()
}
