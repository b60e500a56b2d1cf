package gate_test

import (
	"context"
	"fmt"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	leaderelection "github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/gate"
)

// A controller builds its clientset once, from a gated config, so that
// informers can start on every replica (reads pass, in Option.Standby),
// while only the leader's writes go through, and none after its
// step-down.
func ExampleGate_Config() {
	g := gate.New()
	cfg, err := g.Config(&rest.Config{Host: "https://127.0.0.1:6443"})
	if err != nil {
		panic(err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	opt := leaderelection.Option{
		Gate: g, // the elector opens it with the term, and closes it at the step-down
		Run: func(ctx context.Context) {
			_ = client // ... reconcile, writing through client ...
			<-ctx.Done()
		},
	}
	_ = opt // leaderelection.RunOrDie(opt)
	_, err = g.Check()
	fmt.Println(gate.IsRefused(err))
	// Output: true
}

// Do gates a write to any other store, and hands it the term to use as a
// fencing token where the store can check one.
func ExampleGate_Do() {
	g := gate.New()
	ctx, stepDown := context.WithCancel(context.Background())
	g.Open(ctx, 42)
	err := g.Do(context.Background(), func(ctx context.Context, term int64) error {
		fmt.Println("writing with fencing token", term)
		return nil
	})
	fmt.Println(err)
	stepDown()
	g.Close()
	err = g.Do(context.Background(), func(context.Context, int64) error { return nil })
	fmt.Println(gate.IsRefused(err))
	// Output:
	// writing with fencing token 42
	// <nil>
	// true
}
