package benchtest

import (
	"flag"

	"github.com/b3df926d/leaderelection"
)

// TimingFlags declares -lease-duration, -renew-deadline and -retry-period
// on the command line, defaulting to the library's defaults; the Timing
// holds their values once flag.Parse has run. of, when not empty, says in
// the help what they apply to ("for both sides").
func TimingFlags(of string) *Timing {
	if of != "" {
		of = " " + of
	}
	t := &Timing{}
	flag.DurationVar(&t.LeaseDuration, "lease-duration", leaderelection.DefaultLeaseDuration, "LeaseDuration"+of)
	flag.DurationVar(&t.RenewDeadline, "renew-deadline", leaderelection.DefaultRenewDeadline, "RenewDeadline"+of)
	flag.DurationVar(&t.RetryPeriod, "retry-period", leaderelection.DefaultRetryPeriod, "RetryPeriod"+of)
	return t
}
