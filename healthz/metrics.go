package healthz

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the election's Prometheus metrics, all named
// leader_election_* (client-go's prefix, as its leader_election_master_status
// is; the gossip backend's are leader_election_gossip_*), counters ending in
// _total. The gauges and counter functions read the
// elector's state at scrape time; the renewal histogram and failure counter
// are fed by the elector through ObserveRenew.
//
//	leader_election_master_status{name}            1 while leading (client-go's name)
//	leader_election_term{name}                     this process's term (fencing token)
//	leader_election_transitions_total{name}        the record's LeaderTransitions as last observed
//	leader_election_renew_duration_seconds{name}   renewal latency
//	leader_election_renew_failures_total{name}     failed renewal attempts
//	leader_election_store_errors_total{name}       failed store calls, by any candidate (reads too)
//
// A source whose Status has Shards (a replica of a shard set, package
// shard) has these too, named leader_election_shard*:
//
//	leader_election_shards_owned{name}                 shards this replica runs
//	leader_election_shard_starts_total{name}           shards it started
//	leader_election_shard_stops_total{name}            shards it stopped (their functions returned)
//	leader_election_shard_move_duration_seconds{name}  from reading the assignment that gives this replica a shard to starting it
type Metrics struct {
	renew    *prometheus.HistogramVec
	failures *prometheus.CounterVec
	moves    *prometheus.HistogramVec
}

// NewMetrics registers the metrics for src on reg.
func NewMetrics(reg prometheus.Registerer, src Source) (*Metrics, error) {
	m := NewRenewMetrics()
	return m, m.register(reg, src)
}

// NewRenewMetrics returns the renewal metrics, not registered yet, for an
// elector to be built with (leaderelection.Config.Metrics) before the
// health server that serves them (Options.Metrics), as leaderelection.Run
// does.
func NewRenewMetrics() *Metrics {
	return &Metrics{
		renew: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "leader_election_renew_duration_seconds",
			Help:    "Latency of the leader's renewal attempts.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"name"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leader_election_renew_failures_total",
			Help: "Renewal attempts that failed.",
		}, []string{"name"}),
		moves: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "leader_election_shard_move_duration_seconds",
			Help:    "Time from reading the assignment that gives this replica a shard to starting it: the previous owner's revoke and the barrier.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"name"}),
	}
}

// register registers m and the gauges and counters that read src on reg.
func (m *Metrics) register(reg prometheus.Registerer, src Source) error {
	name := src.Status().Name
	labels := prometheus.Labels{"name": name}
	gauge := func(metric, help string, f func(Status) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: metric, Help: help, ConstLabels: labels},
			func() float64 { return f(src.Status()) })
	}
	counter := func(metric, help string, f func(Status) float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: metric, Help: help, ConstLabels: labels},
			func() float64 { return f(src.Status()) })
	}
	collectors := []prometheus.Collector{
		gauge("leader_election_master_status", "1 while this process leads, else 0.", func(s Status) float64 {
			if s.Leading {
				return 1
			}
			return 0
		}),
		gauge("leader_election_term", "This process's current or last term (fencing token).", func(s Status) float64 { return float64(s.Term) }),
		counter("leader_election_store_errors_total", "Store calls (reads and writes of the lock) that failed.", func(s Status) float64 { return float64(s.StoreErrors) }),
		// A counter: the record's term only grows (a deleted and recreated
		// record that starts again lower reads as a counter reset).
		counter("leader_election_transitions_total", "Leadership transitions of the lock: its LeaderTransitions as last observed.", func(s Status) float64 { return float64(s.Transitions) }),
		m.renew, m.failures,
	}
	if src.Status().Shards != nil {
		shards := func(f func(*Shards) float64) func(Status) float64 {
			return func(s Status) float64 {
				if s.Shards == nil {
					return 0
				}
				return f(s.Shards)
			}
		}
		collectors = append(collectors,
			gauge("leader_election_shards_owned", "Shards this replica runs.", shards(func(s *Shards) float64 { return float64(len(s.Owned)) })),
			counter("leader_election_shard_starts_total", "Shards this replica started.", shards(func(s *Shards) float64 { return float64(s.Starts) })),
			counter("leader_election_shard_stops_total", "Shards this replica stopped (their functions returned).", shards(func(s *Shards) float64 { return float64(s.Stops) })),
			m.moves)
	}
	for _, c := range collectors {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// ObserveRenew records one renewal attempt.
func (m *Metrics) ObserveRenew(name string, took time.Duration, err error) {
	m.renew.WithLabelValues(name).Observe(took.Seconds())
	if err != nil {
		m.failures.WithLabelValues(name).Inc()
	}
}

// ObserveMove records how long one shard took to start on this replica
// after it read the assignment that gives it the shard.
func (m *Metrics) ObserveMove(name string, took time.Duration) {
	m.moves.WithLabelValues(name).Observe(took.Seconds())
}
