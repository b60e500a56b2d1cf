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
type Metrics struct {
	renew    *prometheus.HistogramVec
	failures *prometheus.CounterVec
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
	for _, c := range []prometheus.Collector{
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
	} {
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
