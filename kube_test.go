package leaderelection

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"

	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// A Lease stores whole seconds and client-go truncates them, so a
// fractional LeaseDuration that truncates to RenewDeadline or less is
// refused for a Lease, and allowed for a lock that keeps the exact value.
func TestValidateLeaseDurationInWholeSeconds(t *testing.T) {
	base := Option{
		ID: "a", Run: func(context.Context) {}, Port: NoHealthServer,
		LeaseDuration: 2500 * time.Millisecond, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
	}
	lease := base
	lease.KubeClient, lease.LeaseLockName, lease.LeaseLockNamespace = fake.NewClientset(), "lk", "ns"
	err := lease.Validate()
	if err == nil || !strings.Contains(err.Error(), "LeaseDuration") {
		t.Errorf("Validate with a Lease and LeaseDuration 2.5s, RenewDeadline 2s = %v, want an error naming LeaseDuration", err)
	}
	memory := base
	memory.Lock = locktest.NewMemoryStore("m").Lock("a")
	if err := memory.Validate(); err != nil {
		t.Errorf("Validate with a memory lock: %v", err)
	}
}

// rulesLock is a memory lock whose store has a rule of its own on the
// durations (lock.DurationRules).
type rulesLock struct {
	lock.Interface
}

func (rulesLock) ValidateDurations(leaseDuration, _, _ time.Duration) error {
	if leaseDuration < time.Minute {
		return errors.New("LeaseDuration must be at least 1m on this store")
	}
	return nil
}

// The store's own rules on the durations reach the elector through
// lock.DurationRules, whoever made the lock: the k8s lock's whole-second
// rule refuses 2.5s over a 2s RenewDeadline through Run, Option.Validate
// and NewElector alike; a lock of another package with rules of its own
// gets them applied the same way; and the same durations pass on a lock
// without rules.
func TestTheLocksDurationRulesApplyThroughTheCapability(t *testing.T) {
	kl, err := k8s.New(context.Background(), k8s.Options{Client: fake.NewClientset(), Namespace: "ns", Name: "lk", Identity: "a"})
	if err != nil {
		t.Fatal(err)
	}
	defer kl.Close()
	for _, tc := range []struct {
		name string
		l    lock.Interface
		want string // "": valid
	}{
		{"k8s lock", kl, "LeaseDuration (2.5s) is stored in whole seconds and client-go reads it as 2s"},
		{"lock with rules", rulesLock{locktest.NewMemoryStore("r").Lock("a")}, "LeaseDuration must be at least 1m on this store"},
		{"memory lock", locktest.NewMemoryStore("m").Lock("a"), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			opt := Option{
				Lock: tc.l, Port: NoHealthServer,
				LeaseDuration: 2500 * time.Millisecond, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
				Run: func(context.Context) {},
			}
			c := Config{
				Lock: tc.l, LeaseDuration: opt.LeaseDuration, RenewDeadline: opt.RenewDeadline, RetryPeriod: opt.RetryPeriod,
				Callbacks: Callbacks{OnStartedLeading: func(context.Context) {}},
			}
			_, nerr := NewElector(c)
			for what, err := range map[string]error{"Option.Validate": opt.Validate(), "Config.Validate": c.Validate(), "NewElector": nerr} {
				if tc.want == "" && err != nil {
					t.Errorf("%s = %v, want nil", what, err)
				}
				if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
					t.Errorf("%s = %v, want %q", what, err, tc.want)
				}
			}
			if tc.want == "" {
				return
			}
			if err := Run(context.Background(), opt); err == nil || !strings.Contains(err.Error(), "invalid options") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Run = %v, want invalid options and %q", err, tc.want)
			}
			// The store's rules come after the elector's own: durations
			// that break those get the elector's error alone.
			opt.RenewDeadline = 3 * time.Second
			err := opt.Validate()
			if err == nil || !strings.Contains(err.Error(), "must be greater than RenewDeadline") || strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate with RenewDeadline above LeaseDuration = %v, want the elector's rule and not the store's", err)
			}
		})
	}
}
