package s3_test

import (
	"testing"
	"time"

	s3lock "github.com/b3df926d/leaderelection/backend/s3"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// The conformance suite against a real S3 server (versitygw, posix backend),
// with the follower cache at its default and turned off.
func TestConformanceVersityGW(t *testing.T) {
	s := startVersityGW(t)
	t.Run("DefaultCache", func(t *testing.T) {
		// A follower's Get may serve a live lease for a third of the
		// suite's 15s lease.
		locktest.RunConformanceTests(t, &harness{s: s}, locktest.Options{StaleReads: 5 * time.Second})
	})
	t.Run("NoCache", func(t *testing.T) {
		noCache := func(o *s3lock.Options) { o.ReleaseCheckInterval = s3lock.NoCache }
		locktest.RunConformanceTests(t, &harness{s: s, tune: noCache}, locktest.Options{})
	})
}

// The same suite in process, against gofakes3, which also enforces
// If-None-Match and If-Match.
func TestConformanceGoFakeS3(t *testing.T) {
	locktest.RunConformanceTests(t, &harness{s: startGoFakeS3(t, nil)}, locktest.Options{StaleReads: 5 * time.Second})
}
