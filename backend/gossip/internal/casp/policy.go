package casp

import "time"

// The round driver's policy: what a caller that pumps a round's messages
// (the gossip glue, and the simulation that checks it) decides besides
// sending and handing replies to the round. Both call these functions, so
// the policy the simulation checks is the one that ships.

// Replace is the round driver's stall rule, which the glue (at each of
// its retransmission ticks) and the simulation both call: it reports
// whether to abandon the pending round (Abandon) and run a full round
// above every ballot seen, to every voter, rather than wait and send its
// unanswered messages again. It does when the round is Stalled: it skipped
// its prepare phase and one of the promisers its accepts went to is
// silent; one voter refused it for a higher ballot (a refusal counts
// toward its failure only once too few voters are left for a quorum, so
// until then it would wait for the silent ones); or a voter refused a
// prepare it had promised without telling this round. watched is true
// when the caller needs every reply to this very round (a recovery's
// tally): such a round is never replaced. Abandoning a round is safe at
// any time (as on a timeout), so the rule is one of liveness only.
func (r *Round) Replace(watched bool) bool {
	if watched || r.out.Status != Pending {
		return false
	}
	if r.p.weakStall {
		return r.prepared
	}
	return r.Stalled()
}

// RetryPause is the round driver's pause before it retries a call whose
// round failed (another proposer's round was in the way), given the pause
// before (zero at the first failure) and how long the failed round took:
// twice the larger of the two, at least a millisecond and at most two
// seconds. The driver waits a random time between half of it and all of
// it, so that duelling proposers drift apart, and then starts a round
// above what the refusals named.
func RetryPause(last, took time.Duration) time.Duration {
	return min(max(2*last, 2*took, time.Millisecond), 2*time.Second)
}
