package leaderelection

import (
	"context"
	"errors"

	"github.com/go-logr/logr"

	"github.com/b3df926d/leaderelection/internal/standby"
)

// ErrStandbyNotReady is the "standby" readiness check's error while
// Option.Standby has not called ready.
var ErrStandbyNotReady = errors.New("Option.Standby has not reported ready (it calls ready once its caches are warm)")

// startStandby runs Option.Standby from Run's start until the election has
// ended: on every candidate, leading or not, across lost terms.
func startStandby(ctx context.Context, log logr.Logger, fn func(context.Context, func())) *standby.Runner {
	return standby.Start(ctx, log, standby.Errors{Field: "Option.Standby", NotReady: ErrStandbyNotReady, StopTimeout: ErrStopTimeout}, fn)
}
