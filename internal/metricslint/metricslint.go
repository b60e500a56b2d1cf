// Package metricslint checks, in tests, that a registry's own metrics
// follow the project's naming: one prefix (leader_election_, client-go's)
// and Prometheus's conventions as promlint checks them (counters end in
// _total, units in base units, help text present).
package metricslint

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// Prefix is every metric's prefix.
const Prefix = "leader_election_"

// Check gathers g and fails t for each metric not named Prefix+sub (the Go
// and process collectors' go_ and process_ metrics aside) or that promlint
// finds fault with. It returns the names checked.
func Check(t testing.TB, g prometheus.Gatherer, sub string) []string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		name := mf.GetName()
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue
		}
		names = append(names, name)
		if !strings.HasPrefix(name, Prefix+sub) {
			t.Errorf("metric %s is not named %s*", name, Prefix+sub)
		}
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("metric %s: %s", p.Metric, p.Text)
	}
	return names
}
