package leaderelection

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"github.com/go-logr/logr"

	"github.com/b3df926d/leaderelection/lock/locktest"
)

// runOrDieChild is the program TestRunOrDieExitsNonZeroLoggingOnceThroughSlog
// runs: a slog user's RunOrDie whose work fails.
func runOrDieChild() {
	RunOrDie(Option{
		Lock:   locktest.NewMemoryStore("child").Lock("a"),
		Port:   NoHealthServer,
		Logger: new(logr.FromSlogHandler(slog.NewJSONHandler(os.Stderr, nil))),
		RunE: func(ctx context.Context) error {
			return errors.New("disk full")
		},
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
	})
	os.Exit(0)
}
