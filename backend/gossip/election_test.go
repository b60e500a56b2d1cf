package gossip

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/funcr"

	leaderelection "github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/electiontest"
)

// election runs the module's elector on candidates of a cluster and
// records their terms.
type election struct {
	c   *cluster
	cfg leaderelection.Config
	tr  *electiontest.Tracker

	mu    sync.Mutex
	cands map[string]*candidate
	// claims counts the electors' claims on a record they never saw
	// ("Claimed the lock"): none when the lock proved itself new.
	claims atomic.Int32
}

type candidate struct {
	id     string
	lk     *Lock
	e      *leaderelection.Elector
	cancel context.CancelFunc
	done   chan error
}

// testDurations are the elector's durations in these tests: short, with
// room for a loaded machine (2 cores shared by several test runs).
var testDurations = leaderelection.Config{LeaseDuration: 4 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second}

func newElection(c *cluster, cfg leaderelection.Config) *election {
	el := &election{c: c, cfg: cfg, tr: electiontest.NewTracker(), cands: map[string]*candidate{}}
	// Registered before any candidate starts, so it runs after they stop.
	c.t.Cleanup(func() { el.tr.Check(c.t) })
	return el
}

// run starts an elector on candidate id (which must be started in the
// cluster).
func (el *election) run(id string) *candidate {
	t := el.c.t
	t.Helper()
	lk := el.c.lock(id)
	cand := &candidate{id: id, lk: lk, done: make(chan error, 1)}
	cfg := el.cfg
	cfg.ReleaseOnCancel = true
	logger := funcr.New(func(_, args string) {
		if strings.Contains(args, `"msg"="Claimed the lock`) {
			el.claims.Add(1)
		}
		t.Log(id, args) // shown when the test fails
	}, funcr.Options{})
	cfg.Lock, cfg.Logger = lk, &logger
	cfg.Callbacks = leaderelection.Callbacks{
		OnStartedLeading: func(ctx context.Context) {
			term, _ := leaderelection.TermFrom(ctx)
			i := el.tr.Begin(id, term)
			<-ctx.Done()
			el.tr.End(i)
		},
	}
	e, err := leaderelection.NewElector(cfg)
	if err != nil {
		t.Fatalf("NewElector(%s): %v", id, err)
	}
	cand.e = e
	ctx, cancel := context.WithCancel(context.Background())
	cand.cancel = cancel
	go func() { cand.done <- e.Run(ctx) }()
	el.mu.Lock()
	el.cands[id] = cand
	el.mu.Unlock()
	t.Cleanup(func() { cand.stop(t) })
	return cand
}

// stop cancels the candidate's elector and waits for Run to return.
func (c *candidate) stop(t testing.TB) {
	c.cancel()
	select {
	case err := <-c.done:
		c.done <- err
	case <-time.After(30 * time.Second):
		t.Errorf("%s: Run did not return within 30s of cancel", c.id)
	}
}

// leaderAmong waits until one of ids has an open term and returns it.
func (el *election) leaderAmong(ids []string, within time.Duration) electiontest.Term {
	el.c.t.Helper()
	var got electiontest.Term
	el.tr.WaitFor(el.c.t, "a leader among "+joinIDs(ids), within, func(terms []electiontest.Term) bool {
		if len(terms) == 0 {
			return false
		}
		last := terms[len(terms)-1]
		if last.End.IsZero() && slices.Contains(ids, last.ID) {
			got = last
			return true
		}
		return false
	})
	return got
}

// settledOn waits until every candidate of ids knows leader's record and
// the clock has passed every ballot they used, so that a release or
// hand-over the test starts next finds them idle.
//
// Every elector of ids has read the record (its first Get has returned:
// later ones are served from what the pushes taught it), so that none of
// them reads while it is released. Knowing the record from a push is not
// enough: a first Get still running runs rounds or queries the voters. A
// round can take the release over, making it chosen without its writer
// learning so (the writer's round fails, and its retry finds the next
// leader's record); a query reserves a ballot above the one handed over,
// which the heir then refuses.
//
// And the clock has passed every ballot they used: the hand-over's ballot
// is one above the releaser's clock, and an heir adopts only a ballot
// above all it used. Rounds run together (these first reads) push ballot
// counters a few milliseconds ahead of the clock; an idle follower's are
// behind it.
func (el *election) settledOn(leader string, ids []string) {
	t := el.c.t
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, id := range ids {
		l := el.c.lock(id)
		el.mu.Lock()
		cand := el.cands[id]
		el.mu.Unlock()
		for {
			l.mu.Lock()
			knows := l.latestRec != nil && l.latestRec.HolderIdentity == leader && !l.distrust &&
				l.haveToken && l.token == l.latest.Token()
			l.mu.Unlock()
			if knows && (cand == nil || cand.e.GetLeader() == leader) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s did not learn %s's record", id, leader)
			}
			time.Sleep(20 * time.Millisecond) // polling the lock's state
		}
	}
	for _, id := range ids {
		l := el.c.lock(id)
		for {
			l.propMu.Lock()
			used := l.prop.Last().Counter
			l.propMu.Unlock()
			if nowMillis() > used {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s's ballots stay ahead of the clock (%d)", id, used)
			}
			time.Sleep(time.Millisecond) // waiting for the clock to pass a ballot counter
		}
	}
}

// ended waits until term index i has ended and returns when.
func (el *election) ended(i int, within time.Duration) time.Time {
	el.c.t.Helper()
	terms := el.tr.WaitFor(el.c.t, "the term to end", within, func(terms []electiontest.Term) bool {
		return !terms[i].End.IsZero()
	})
	return terms[i].End
}

func joinIDs(ids []string) string {
	s := ""
	for i, id := range ids {
		if i > 0 {
			s += ","
		}
		s += id
	}
	return s
}

// indexOf returns the index of the last term equal to tm.
func indexOf(terms []electiontest.Term, tm electiontest.Term) int {
	for i := len(terms) - 1; i >= 0; i-- {
		if terms[i].ID == tm.ID && terms[i].Term == tm.Term {
			return i
		}
	}
	return -1
}

// votersElection starts n voters, each a candidate running the elector.
func votersElection(t *testing.T, n int, stateDirs bool, tune func(*Options)) (*cluster, *election) {
	c := newCluster(t, n, stateDirs, tune)
	el := newElection(c, testDurations)
	for _, v := range c.voters {
		el.run(v)
	}
	return c, el
}

// observe lets d pass: a window in which the test checks that something
// does NOT happen (it is not waiting for anything).
func observe(d time.Duration) { <-time.After(d) }

func others(all []string, not ...string) []string {
	var out []string
	for _, a := range all {
		if !slices.Contains(not, a) {
			out = append(out, a)
		}
	}
	return out
}

func TestMinorityLeaderStepsDownMajorityElects(t *testing.T) {
	c, el := votersElection(t, 5, false, fastReinit)
	cfg := el.cfg
	first := el.leaderAmong(c.voters, 30*time.Second)
	minority := []string{first.ID, others(c.voters, first.ID)[0]}
	majority := others(c.voters, minority...)

	cut := time.Now()
	c.net.Partition(minority, majority)
	terms := el.tr.Terms()
	end := el.ended(indexOf(terms, first), cfg.RenewDeadline+10*time.Second)
	t.Logf("minority leader %s stopped %v after the cut (RenewDeadline %v)", first.ID, end.Sub(cut).Round(time.Millisecond), cfg.RenewDeadline)
	// The elector's own timer: RenewDeadline after the start of the last
	// good renewal, which was before the cut. Slack for a loaded machine.
	if end.Sub(cut) > cfg.RenewDeadline+time.Second {
		t.Errorf("minority leader stopped %v after the cut; RenewDeadline is %v", end.Sub(cut), cfg.RenewDeadline)
	}
	next := el.leaderAmong(majority, cfg.LeaseDuration+20*time.Second)
	t.Logf("majority elected %s (term %d) %v after the cut", next.ID, next.Term, next.Start.Sub(cut).Round(time.Millisecond))
	if next.Term <= first.Term {
		t.Errorf("term %d after term %d", next.Term, first.Term)
	}
	if next.Start.Before(end) {
		t.Errorf("majority leader started at %v, before the minority leader stopped at %v", next.Start, end)
	}
	// Let the majority renew a while; the minority must never elect.
	observe(2 * cfg.LeaseDuration)
	for _, tm := range el.tr.Terms() {
		if tm.Start.After(cut) && slices.Contains(minority, tm.ID) {
			t.Errorf("%s, on the minority side, started term %d during the partition", tm.ID, tm.Term)
		}
	}

	c.net.Heal()
	healed := time.Now()
	// After healing: still one leader at a time (the tracker checks), and
	// a new term still goes up: make the leader hand over.
	el.mu.Lock()
	lead := el.cands[next.ID]
	el.mu.Unlock()
	lead.stop(t)
	after := el.leaderAmong(others(c.voters, next.ID), cfg.LeaseDuration+20*time.Second)
	t.Logf("after healing and a hand-over, %s leads term %d (%v after healing)", after.ID, after.Term, after.Start.Sub(healed).Round(time.Millisecond))
	if after.Term <= next.Term {
		t.Errorf("term %d after term %d", after.Term, next.Term)
	}
}

func TestSymmetricPartitionNobodyLeads(t *testing.T) {
	c, el := votersElection(t, 5, false, fastReinit)
	cfg := el.cfg
	first := el.leaderAmong(c.voters, 30*time.Second)
	v := c.voters
	cut := time.Now()
	c.net.Partition(v[0:2], v[2:4], v[4:5])
	el.ended(indexOf(el.tr.Terms(), first), cfg.RenewDeadline+10*time.Second)
	// Nobody has a majority: for two leases, nobody may start a term.
	observe(2*cfg.LeaseDuration + cfg.RenewDeadline - time.Since(cut))
	for _, tm := range el.tr.Terms() {
		if tm.Start.After(cut) {
			t.Errorf("%s started term %d with no majority anywhere", tm.ID, tm.Term)
		}
	}
	c.net.Heal()
	next := el.leaderAmong(v, cfg.LeaseDuration+20*time.Second)
	if next.Term <= first.Term {
		t.Errorf("term %d after healing, after term %d", next.Term, first.Term)
	}
}

// A release is pushed first to the member whose turn comes first, and to
// the others a turn step later. Here most members are voters that run no
// elector, so the first in turn is usually one that never takes over: the
// release must still reach the candidate that does, and it must take over
// at once, also when it has just restarted at a new address after a crash.
// The lease is an hour, so only the release can move leadership.
func TestReleaseReachesEveryCandidateWhenTheFirstInTurnDoesNotCampaign(t *testing.T) {
	c := newCluster(t, 3, false, fastReinit)
	c.start("a", nil)
	c.start("b", nil)
	c.waitMembers(5)
	// A released record to start from: a lock with no record would make
	// the first candidate claim it for a lease (an hour) first.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.lock("v1").Create(ctx, lock.Record{LeaderTransitions: 1}); err != nil {
		t.Fatal(err)
	}
	el := newElection(c, leaderelection.Config{LeaseDuration: time.Hour, RenewDeadline: 10 * time.Second, RetryPeriod: time.Second})
	cands := map[string]*candidate{"a": el.run("a")}
	lead := el.leaderAmong([]string{"a"}, 30*time.Second)
	cands["b"] = el.run("b")
	for i := range 6 {
		prev, next := lead.ID, others([]string{"a", "b"}, lead.ID)[0]
		began := time.Now()
		cands[prev].stop(t) // releases
		// And the process exits at once: leaving memberlist, or as a
		// crash, which leaves its old process alive in the others'
		// views until their failure detectors declare it dead.
		exit := "leave"
		if i%2 == 0 {
			c.stop(prev)
		} else {
			exit = "crash"
			c.crash(prev)
		}
		lead = el.leaderAmong([]string{next}, 30*time.Second)
		took := lead.Start.Sub(began)
		c.start(prev, nil) // a new process, at a new address
		started := time.Now()
		// A release reaches the processes the leader knows of: this one
		// once memberlist has gossiped its join (some 100 ms; on a loaded
		// machine, lost gossip waits for a push-pull, seconds). It is
		// admitted at its new address at once, whatever the leader knows
		// of the process before it.
		c.waitAlive(next, prev, 20*time.Second)
		t.Logf("%s released and exited (%s): %s led %v later; %s's new process known to %s %v after its start",
			prev, exit, next, took.Round(time.Millisecond), prev, next, time.Since(started).Round(time.Millisecond))
		cands[prev] = el.run(prev)
	}
}
