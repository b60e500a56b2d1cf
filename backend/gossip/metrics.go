package gossip

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are one lock's counters, registered on Options.Registerer if set.
type metrics struct {
	sent, received *prometheus.CounterVec // by message kind
	refused        *prometheus.CounterVec // by reason
	sendFailures   prometheus.Counter
	joinFailures   prometheus.Counter
	reinits        prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, election string) (*metrics, error) {
	labels := prometheus.Labels{"election": election}
	m := &metrics{
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leader_election_gossip_messages_sent_total", ConstLabels: labels,
			Help: "Protocol messages this candidate sent, by kind (prepare, accept, promise, accepted, nack, refused, push).",
		}, []string{"kind"}),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leader_election_gossip_messages_received_total", ConstLabels: labels,
			Help: "Protocol messages this candidate received, by kind.",
		}, []string{"kind"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "leader_election_gossip_refused_total", ConstLabels: labels,
			Help: "Messages or members refused, by reason: voters (a different voter list), key (undecryptable traffic), duplicate_name, election, malformed.",
		}, []string{"reason"}),
		sendFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leader_election_gossip_send_failures_total", ConstLabels: labels,
			Help: "Messages that could not be sent (unreachable member, or too many sends in flight).",
		}),
		joinFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leader_election_gossip_join_failures_total", ConstLabels: labels,
			Help: "Attempts to (re-)join the seeds in which none answered.",
		}),
		reinits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "leader_election_gossip_register_reinitialisations_total", ConstLabels: labels,
			Help: "Times the voters re-initialised the register after losing a quorum's state (a full restart without StateDir).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.sent, m.received, m.refused, m.sendFailures, m.joinFailures, m.reinits} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	// Initialise the common series, so they read 0 rather than absent.
	for _, k := range kindNames[1:] {
		m.sent.WithLabelValues(k)
		m.received.WithLabelValues(k)
	}
	for _, r := range []string{"voters", "key", "duplicate_name"} {
		m.refused.WithLabelValues(r)
	}
	return m, nil
}
