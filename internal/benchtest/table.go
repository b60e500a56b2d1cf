package benchtest

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Pct is the p-th percentile (0 < p ≤ 1, nearest rank) of ds; 0 for none.
func Pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(p*float64(len(s))+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// Ms formats d in whole milliseconds ("12 ms").
func Ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", d.Seconds()*1e3) }

// Millis is d in milliseconds, for b.ReportMetric.
func Millis(d time.Duration) float64 { return d.Seconds() * 1e3 }

// Ratio formats a/b as "3.2×" (∞ when b is not positive).
func Ratio(a, b float64) string {
	if b <= 0 {
		return "∞"
	}
	return fmt.Sprintf("%.1f×", a/b)
}

// PerMinute lists counts per minute over window, by key, sorted.
func PerMinute(counts map[string]int, window time.Duration) string {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s %.1f", k, float64(counts[k])/window.Minutes()))
	}
	return strings.Join(parts, ", ")
}
