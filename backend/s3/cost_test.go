package s3_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	s3lock "github.com/b3df926d/leaderelection/backend/s3"
)

// S3 Standard request prices (us-east-1), in dollars per request.
const (
	pricePUT   = 0.005 / 1000
	priceGET   = 0.0004 / 1000
	hoursMonth = 730
)

// costWindow is how long TestRequestCostsAtDefaultDurations counts
// requests: LE_S3_COST_WINDOW (a Go duration), default 60s.
func costWindow(t *testing.T) time.Duration {
	if v := os.Getenv("LE_S3_COST_WINDOW"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("LE_S3_COST_WINDOW: %v", err)
		}
		return d
	}
	return time.Minute
}

// Three replicas at client-go's default durations (lease 15s, renew
// deadline 10s, retry period 2s) against versitygw, with the follower
// cache at its default and turned off; every request each candidate sends
// is counted. docs/backends/s3.md quotes these figures.
func TestRequestCostsAtDefaultDurations(t *testing.T) {
	if testing.Short() {
		t.Skip("counts requests for a minute")
	}
	s := startVersityGW(t)
	window := costWindow(t)
	for _, tc := range []struct {
		name  string
		cache time.Duration
		// The most GETs per hour a follower may send: with the cache, one
		// per release check (lease/3 = 5s); without, one per poll, at least
		// RetryPeriod (2s) apart.
		maxFollowerGETs float64
	}{
		{"DefaultCache", 0, 3600 / 5},
		{"NoCache", s3lock.NoCache, 3600 / 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			el := newS3Election(t, s, 15*time.Second, 10*time.Second, 2*time.Second, tc.cache)
			all := []*s3Candidate{el.add("r0"), el.add("r1"), el.add("r2")}
			leader := el.leader(all...)
			for _, c := range all {
				c.counter.Reset()
			}
			start := time.Now()
			time.Sleep(window)
			hours := time.Since(start).Hours()
			if terms := el.termsStarted(); !leader.e.IsLeader() || len(terms) != 1 {
				t.Fatalf("leadership changed during the measurement (terms %v)", terms)
			}

			var rows []string
			var monthly float64
			for _, c := range all {
				role := "follower"
				if c == leader {
					role = "leader"
				}
				puts, gets := float64(c.counter.Count("PUT"))/hours, float64(c.counter.Count("GET"))/hours
				cost := (puts*pricePUT + gets*priceGET) * hoursMonth
				monthly += cost
				rows = append(rows, fmtRow(c.id, role, puts, gets, cost))
				if c == leader {
					if puts < 1500 || puts > 1900 {
						t.Errorf("leader: %.0f PUT/h, want about 1800 (one renewal per 2s retry period)", puts)
					}
					if c.counter.Count("GET") > 0 {
						t.Errorf("leader: %d GETs; renewals need no read", c.counter.Count("GET"))
					}
				} else {
					if c.counter.Count("PUT") > 0 {
						t.Errorf("%s: %d PUTs as a follower of a live leader", c.id, c.counter.Count("PUT"))
					}
					// One extra read for the measurement's edges.
					if max := tc.maxFollowerGETs + 1/hours; gets > max {
						t.Errorf("%s: %.0f GET/h, want at most %.0f", c.id, gets, max)
					}
				}
			}
			t.Logf("%s, measured over %v:\n| candidate | role | PUT/h | GET/h | $/month |\n|---|---|---|---|---|\n%s\n3 replicas: $%.2f/month",
				tc.name, window, strings.Join(rows, "\n"), monthly)
		})
	}
}

func fmtRow(id, role string, puts, gets, cost float64) string {
	return fmt.Sprintf("| %s | %s | %.0f | %.0f | $%.3f |", id, role, puts, gets, cost)
}
