package leaderelection_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-logr/logr"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// Run runs the function only while this process holds the lock. Here the
// function returns by itself, which ends Run; a controller would instead
// work until its context is cancelled.
func ExampleRun() {
	store := locktest.NewMemoryStore("example") // in production: a backend's lock
	err := leaderelection.Run(context.Background(), leaderelection.Option{
		Lock:            store.Lock("replica-1"),
		Port:            leaderelection.NoHealthServer,
		ReleaseOnCancel: true,
		Run: func(ctx context.Context) {
			term, _ := leaderelection.TermFrom(ctx)
			fmt.Println("leading in term", term)
		},
	})
	fmt.Println("Run returned", err)
	// Output:
	// leading in term 1
	// Run returned <nil>
}

// An Elector can be used directly, without the health server.
func ExampleNewElector() {
	store := locktest.NewMemoryStore("example")
	ctx, cancel := context.WithCancel(context.Background())
	e, err := leaderelection.NewElector(leaderelection.Config{
		Lock:            store.Lock("replica-1"),
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.Callbacks{
			OnStartedLeading: func(ctx context.Context) {
				fmt.Println("started leading")
				cancel() // stop after one term, for the example
				<-ctx.Done()
			},
			OnStoppedLeading: func() { fmt.Println("stopped leading") },
		},
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("Run returned", e.Run(ctx), "term", e.Term())
	// Output:
	// started leading
	// stopped leading
	// Run returned <nil> term 1
}

// Invalid options give one error naming every bad field.
func ExampleOption_Validate() {
	err := leaderelection.Option{
		Lock:          locktest.NewMemoryStore("example").Lock("replica-1"),
		LeaseDuration: 5 * time.Second,
		Port:          70000,
	}.Validate()
	fmt.Println(err)
	// Output:
	// Run must not be nil
	// Option.Port 70000 is out of range: want 1-65535, 0 for 8080, or -1 to disable the health server
	// LeaseDuration (5s, --leader-elect-lease-duration) must be greater than RenewDeadline (10s, --leader-elect-renew-deadline): lower the renew deadline below 5s (and the retry period below it ÷ 1.2), or raise the lease duration above 10s
}

// By hand: an Elector and its health server, wired in two calls, as Run
// wires them (the server reads the elector; the elector feeds its metrics).
func ExampleNewHealthServer() {
	e, err := leaderelection.NewElector(leaderelection.Config{
		Lock:          locktest.NewMemoryStore("example").Lock("replica-1"),
		LeaseDuration: 15 * time.Second, RenewDeadline: 10 * time.Second, RetryPeriod: 2 * time.Second,
		Callbacks: leaderelection.Callbacks{OnStartedLeading: func(ctx context.Context) {
			fmt.Println("leading")
		}},
	})
	if err != nil {
		panic(err)
	}
	srv, err := leaderelection.NewHealthServer(e, healthz.Options{Addr: "127.0.0.1:0"})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go srv.Serve(ctx)
	fmt.Println("Run returned", e.Run(ctx))
	// Output:
	// leading
	// Run returned <nil>
}

// The application reads leadership from its own handlers, mounted on the
// health server, and a log/slog user plugs in a logger in one line.
func ExampleLeadership() {
	var le leaderelection.Leadership
	opt := leaderelection.Option{
		Lock:       locktest.NewMemoryStore("example").Lock("replica-1"),
		Leadership: &le,
		Handlers: map[string]http.Handler{"/am-i-leader": http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			fmt.Fprintln(w, le.IsLeader(), le.Term())
		})},
		LeaderOnlyReady: true, // /readyz fails on followers: a Service routes to the leader only
		Logger:          new(logr.FromSlogHandler(slog.NewTextHandler(io.Discard, nil))),
		RunE: func(ctx context.Context) error {
			fmt.Println("leader:", le.IsLeader(), "term:", le.Term())
			return nil
		},
		Port: leaderelection.NoHealthServer, // a real program keeps its health server
	}
	fmt.Println("Run returned", leaderelection.Run(context.Background(), opt))
	// Output:
	// leader: true term: 1
	// Run returned <nil>
}

// With Recampaign, a process that lost its lease campaigns again instead
// of ending Run, provided its function returned. Here the record is
// deleted under the leader (as by kubectl delete lease): it steps down at
// its next renewal, waits out the lease it last saw, and leads again in a
// higher term.
func ExampleOption_recampaign() {
	store := locktest.NewMemoryStore("example")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err := leaderelection.Run(ctx, leaderelection.Option{
		Lock:          store.Lock("replica-1"),
		Port:          leaderelection.NoHealthServer,
		Recampaign:    true,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
		Run: func(ctx context.Context) {
			term, _ := leaderelection.TermFrom(ctx)
			fmt.Println("leading in term", term)
			if term == 1 {
				store.Delete()
			} else {
				cancel()
			}
			<-ctx.Done()
		},
	})
	fmt.Println("Run returned", err)
	// Output:
	// leading in term 1
	// leading in term 2
	// Run returned <nil>
}
