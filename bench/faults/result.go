package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// Result is what one campaign measured. The fields under "must be 0" are
// safety violations; the campaign's test fails on any.
type Result struct {
	Backend       string `json:"backend"`
	Seed          int64  `json:"seed"`
	Replicas      int    `json:"replicas"`
	LeaseDuration string `json:"leaseDuration"`
	RenewDeadline string `json:"renewDeadline"`
	RetryPeriod   string `json:"retryPeriod"`
	Recover       bool   `json:"recover"`
	Started       string `json:"started"`
	Elapsed       string `json:"elapsed"`

	// Shards is the sharded mode's shard count (0: one leadership). There,
	// Transitions are moves (a shard's owner changing), TransitionsBy the
	// moves from each fault until settled, and Takeover the time from a
	// fault's end until the shards were settled again; the "must be 0"
	// counts are per shard (its sink, its terms).
	Shards int `json:"shards,omitempty"`
	// ShardTenures counts new per-shard terms after each shard's first
	// (moves, and shards that stayed but restarted under a new term).
	ShardTenures int `json:"shardTenures,omitempty"`

	FaultsTotal   int            `json:"faultsTotal"`
	Faults        map[string]int `json:"faults"`
	Transitions   int            `json:"transitions"`
	TransitionsBy map[string]int `json:"transitionsByFault"`
	// Takeover is, per fault kind, the time from the fault's start to the
	// first /status of a new leader, for faults that changed the leader.
	// For store-outage, from the store's return.
	Takeover map[string]Percentiles `json:"takeoverMs"`
	// Recovered is, for store-outage, the time from the store's return
	// until the leader before the outage led again in its term (Recover),
	// for the outages after which it did.
	Recovered    Percentiles `json:"recoveredInTheSameTermMs"`
	LongestGapMS int64       `json:"longestLeaderlessGapMs"`

	// Must be 0.
	TermsHeldTwice   int `json:"termsHeldByTwoIdentities"`
	OutOfOrderWrites int `json:"writesAcceptedOutOfTermOrder"`
	Overlaps         int `json:"overlappingWorkByLiveLeaders"`
	TermRegressions  int `json:"termRegressions"`
	// gossip: a replica cut off in a minority began a tenure.
	MinorityElections int `json:"minorityElections"`

	// Reported.
	FencedWrites           int     `json:"writesRejectedByFencing"`
	AcceptedWrites         int     `json:"writesAccepted"`
	StaleLeaderReports     int     `json:"staleLeaderReportsAfterPause"`
	UnexpectedExits        int     `json:"unexpectedExits"`
	LivezFailures          int     `json:"livezFailures"`
	StoreRequestsPerMinute float64 `json:"storeRequestsPerMinute"`
	Samples                int     `json:"statusRounds"`

	Violations []string `json:"violations,omitempty"`
	Problems   []string `json:"problems,omitempty"`
	Dir        string   `json:"dir"`

	takeovers  map[string][]time.Duration
	recoveries []time.Duration
}

// Percentiles of a takeover time, in milliseconds.
type Percentiles struct {
	N   int   `json:"n"`
	P50 int64 `json:"p50"`
	P99 int64 `json:"p99"`
	Max int64 `json:"max"`
}

func newResult(cfg Config) *Result {
	return &Result{
		Backend: cfg.Backend, Seed: cfg.Seed, Replicas: cfg.Replicas,
		LeaseDuration: cfg.LeaseDuration.String(), RenewDeadline: cfg.RenewDeadline.String(), RetryPeriod: cfg.RetryPeriod.String(),
		Recover: cfg.Recover, Shards: cfg.Shards,
		Started: time.Now().UTC().Format(time.RFC3339),
		Faults:  map[string]int{}, TransitionsBy: map[string]int{}, Takeover: map[string]Percentiles{},
		takeovers: map[string][]time.Duration{},
	}
}

// maxViolations bounds the details kept; the counts stay exact.
const maxViolations = 50

func (r *Result) violation(format string, args ...any) {
	if len(r.Violations) < maxViolations {
		r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
	}
}

func (r *Result) takeover(kind string, d time.Duration) {
	ds := append(r.takeovers[kind], d)
	r.takeovers[kind] = ds
	r.Takeover[kind] = percentiles(ds)
}

// recovered records a leader that led again in its term, d after the
// store's return.
func (r *Result) recovered(d time.Duration) {
	r.recoveries = append(r.recoveries, d)
	r.Recovered = percentiles(r.recoveries)
}

func percentiles(ds []time.Duration) Percentiles {
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	at := func(q float64) int64 {
		i := int(q*float64(len(sorted))+0.5) - 1
		return sorted[min(max(i, 0), len(sorted)-1)].Milliseconds()
	}
	return Percentiles{N: len(sorted), P50: at(0.5), P99: at(0.99), Max: sorted[len(sorted)-1].Milliseconds()}
}

// Safe reports whether no safety violation was seen.
func (r *Result) Safe() bool {
	return r.TermsHeldTwice == 0 && r.OutOfOrderWrites == 0 && r.Overlaps == 0 && r.TermRegressions == 0 && r.MinorityElections == 0
}

// Markdown writes the result as a table.
func (r *Result) Markdown(w io.Writer) {
	// label is a row's name: one leadership's, or the sharded mode's.
	label := func(one, sharded string) string {
		if r.Shards > 0 {
			return sharded
		}
		return one
	}
	fmt.Fprintf(w, "### %s%s\n\n", r.Backend, label("", fmt.Sprintf(", %d shards", r.Shards)))
	recover := ""
	if r.Recover {
		recover = ", --leader-elect-recover"
	}
	fmt.Fprintf(w, "%d replicas, seed %d, LeaseDuration %s, RenewDeadline %s, RetryPeriod %s%s; started %s, ran %s.\n\n",
		r.Replicas, r.Seed, r.LeaseDuration, r.RenewDeadline, r.RetryPeriod, recover, r.Started, r.Elapsed)
	fmt.Fprintf(w, "| fault | injected | %s p50 | p99 | max |\n|---|---:|---:|---:|---:|---:|\n",
		label("transitions | takeover", "moves | settled after"))
	kinds := make([]string, 0, len(r.Faults))
	for k := range r.Faults {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	for _, k := range kinds {
		p, ok := r.Takeover[k]
		if !ok {
			fmt.Fprintf(w, "| %s | %d | %d | – | – | – |\n", k, r.Faults[k], r.TransitionsBy[k])
			continue
		}
		fmt.Fprintf(w, "| %s | %d | %d | %d ms | %d ms | %d ms |\n", k, r.Faults[k], r.TransitionsBy[k], p.P50, p.P99, p.Max)
	}
	if p := r.Recovered; p.N > 0 {
		fmt.Fprintf(w, "| %s: the leader led again in its term, from the store's return | %d | – | %d ms | %d ms | %d ms |\n", StoreOutage, p.N, p.P50, p.P99, p.Max)
	}
	fmt.Fprintf(w, "| **all** | %d | %d | | | |\n\n", r.FaultsTotal, r.Transitions)
	reqs := "n/a (local file)"
	if r.Backend == "gossip" {
		reqs = "n/a (no store: the replicas vote)"
	}
	if r.StoreRequestsPerMinute >= 0 {
		reqs = fmt.Sprintf("%.0f", r.StoreRequestsPerMinute)
	}
	rows := [][2]string{
		{label("terms held by two identities", "per-shard terms held by two identities (reused)") + " (must be 0)", fmt.Sprint(r.TermsHeldTwice)},
		{label("writes accepted out of term order by the sink", "writes accepted out of term order by a shard's sink") + " (must be 0)", fmt.Sprint(r.OutOfOrderWrites)},
		{label("overlapping work by two live, unpaused leaders", "a shard worked by two live, unpaused replicas") + " (must be 0)", fmt.Sprint(r.Overlaps)},
		{label("terms that went backwards", "per-shard terms that went backwards") + " (must be 0)", fmt.Sprint(r.TermRegressions)},
	}
	if r.Shards > 0 {
		rows = append(rows, [2]string{"new per-shard terms (moves, and shards restarted by their owner under a new term)", fmt.Sprint(r.ShardTenures)})
	}
	if r.Backend == "gossip" {
		rows = append(rows, [2]string{"tenures begun by a replica cut off in a minority (must be 0)", fmt.Sprint(r.MinorityElections)})
	}
	rows = append(rows, [][2]string{
		{label("writes rejected by fencing (stale leaders after a pause)", "writes rejected by the shards' fencing (stale owners after a pause)"), fmt.Sprint(r.FencedWrites)},
		{label("writes accepted by the sink", "writes accepted by the shards' sinks"), fmt.Sprint(r.AcceptedWrites)},
		{label("a paused leader still said it led after it woke (observed)", "a paused replica still listed a shard another ran, after it woke (observed)"), fmt.Sprint(r.StaleLeaderReports)},
		{label("longest leaderless gap", "longest a shard was run by no running, unpaused replica"), fmt.Sprintf("%d ms", r.LongestGapMS)},
		{"replicas that exited with an unexpected status", fmt.Sprint(r.UnexpectedExits)},
		{"replicas that stopped answering /livez", fmt.Sprint(r.LivezFailures)},
		{"store requests per minute", reqs},
	}...)
	fmt.Fprintf(w, "| measure | value |\n|---|---:|\n")
	for _, row := range rows {
		fmt.Fprintf(w, "| %s | %s |\n", row[0], row[1])
	}
	if len(r.Violations) > 0 {
		fmt.Fprintf(w, "\nViolations:\n\n- %s\n", strings.Join(r.Violations, "\n- "))
	}
	if len(r.Problems) > 0 {
		fmt.Fprintf(w, "\nProblems:\n\n- %s\n", strings.Join(r.Problems, "\n- "))
	}
	fmt.Fprintln(w)
}
