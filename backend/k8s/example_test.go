package k8s_test

import (
	"context"
	"log"
	"os"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/k8s"
)

// A pod elects its leader through a Lease in its namespace. The pod needs a
// Role allowing get, create, update, list and watch on leases (see
// example/deploy).
func Example() {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		log.Fatal(err)
	}
	client := kubernetes.NewForConfigOrDie(cfg)
	l, err := k8s.New(context.Background(), k8s.Options{
		Client:    client,
		Namespace: os.Getenv("POD_NAMESPACE"),
		Name:      "my-controller",
		Identity:  os.Getenv("POD_NAME"),
	})
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	if err := k8s.ValidateDurations(15*time.Second, 10*time.Second); err != nil {
		log.Fatal(err)
	}
	e, err := leaderelection.NewElector(leaderelection.Config{
		Lock:            l,
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		ReleaseOnCancel: true,
		Callbacks: leaderelection.Callbacks{
			OnStartedLeading: func(ctx context.Context) {
				term, _ := leaderelection.TermFrom(ctx)
				log.Printf("leading in term %d", term)
				<-ctx.Done()
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := e.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
}
