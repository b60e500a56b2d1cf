package gossip_test

import (
	"context"
	"log"
	"time"

	leaderelection "github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/gossip"
)

// A candidate that is one of three voters (a StatefulSet's pods, say),
// joining the others through a headless Service, running the module's
// elector.
func ExampleNew() {
	ctx := context.Background()
	lk, err := gossip.New(ctx, gossip.Options{
		Name:          "my-controller",
		Identity:      "ctl-0", // default: $POD_NAME
		Voters:        []string{"ctl-0", "ctl-1", "ctl-2"},
		Bind:          "0.0.0.0:7946",
		Join:          []string{"ctl-gossip.default.svc:7946"},
		SecretKeyFile: "/etc/gossip/key",
		StateDir:      "/var/lib/leaderelection",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer lk.Close()
	e, err := leaderelection.NewElector(leaderelection.Config{
		Lock:          lk,
		LeaseDuration: 15 * time.Second,
		RenewDeadline: 10 * time.Second,
		RetryPeriod:   2 * time.Second,
		Callbacks: leaderelection.Callbacks{
			OnStartedLeading: func(ctx context.Context) { <-ctx.Done() },
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = e.Run(ctx)
}

// A voter restarted without its state is not ready until it has recovered
// its record from the other voters: Ready is the lock's readiness check
// (lock.ReadinessChecker), which leaderelection.Run and NewHealthServer
// serve as /readyz/gossip.
func ExampleLock_Ready() {
	lk, err := gossip.New(context.Background(), gossip.Options{
		Name:          "my-controller",
		Voters:        []string{"ctl-0", "ctl-1", "ctl-2"},
		Join:          []string{"ctl-gossip.default.svc:7946"},
		SecretKeyFile: "/etc/gossip/key",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer lk.Close()
	leaderelection.RunOrDie(leaderelection.Option{
		Lock:            lk, // /readyz/gossip fails until lk.Ready() is nil
		ReleaseOnCancel: true,
		Run:             func(ctx context.Context) { <-ctx.Done() },
	})
}
