package healthz

import "time"

// Status is a snapshot of an elector's state, as served on /status and read
// by the watchdog and the metrics.
type Status struct {
	// Name labels the election (metrics use it as the "name" label).
	Name string `json:"name"`
	// Identity is this candidate.
	Identity string `json:"identity"`
	// Lock describes the store object.
	Lock string `json:"lock"`
	// Leading is true while this process holds the lock.
	Leading bool `json:"leading"`
	// Leader is the last observed holder ("" if none).
	Leader string `json:"leader"`
	// Term is this process's current term (the fencing token) while
	// leading, else the last term it held (0 if never).
	Term int64 `json:"term"`
	// Transitions is the record's LeaderTransitions as last observed.
	Transitions int64 `json:"transitions"`
	// LastRenew is when this process last renewed (zero if never).
	LastRenew time.Time `json:"lastRenew,omitzero"`
	// Expiry is when, by this process's clock, the observed lease lapses if
	// not renewed.
	Expiry time.Time `json:"expiry,omitzero"`
	// LeaseDuration is the configured lease duration.
	LeaseDuration time.Duration `json:"leaseDuration"`
}

// Source is what the health server reads: an elector.
type Source interface {
	Status() Status
}
