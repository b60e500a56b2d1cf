package gossip

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/b3df926d/leaderelection/internal/metricslint"
)

// Every gossip metric is named leader_election_gossip_* (the prefix of the
// elector's own, client-go's) and passes promlint.
func TestMetricNamesFollowOnePrefixAndPrometheusConventions(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := newMetrics(reg, "e")
	if err != nil {
		t.Fatal(err)
	}
	m.sendFailures.Inc()
	if names := metricslint.Check(t, reg, "gossip_"); len(names) != 6 {
		t.Errorf("checked %d metrics %v, want 6", len(names), names)
	}
}
