// Package renewtime holds the one rule for the RenewTime a lease renewal
// writes, shared by the elector and the shard package.
package renewtime

import (
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Next is the RenewTime a renewal starting at now writes after one that
// wrote prev: now, unless the wall clock was stepped back so far that the
// record (which stores whole seconds) would not change. Followers only see
// a renewal that changes the record; an unchanged one would make them
// measure the lease from an earlier renewal. So within a term RenewTime
// strictly increases, whatever the wall clock does; nothing compares it
// with another clock.
func Next(now time.Time, prev metav1.Time) metav1.Time {
	if !prev.IsZero() && now.Unix() <= prev.Unix() {
		return metav1.NewTime(prev.Truncate(time.Second).Add(time.Second))
	}
	return metav1.NewTime(now)
}
