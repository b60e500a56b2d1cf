package healthz_test

import (
	"context"
	"fmt"
	"io"
	"net/http"

	"github.com/b3df926d/leaderelection/healthz"
)

type follower struct{}

func (follower) Status() healthz.Status {
	return healthz.Status{Name: "ctrl", Identity: "replica-b", Leader: "replica-a"}
}

// New binds the port at once (so a port in use is an error here); Serve
// serves until its context ends.
func ExampleNew() {
	srv, err := healthz.New(healthz.Options{Addr: "127.0.0.1:0", Source: follower{}})
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- srv.Serve(ctx) }()

	resp, err := http.Get("http://" + srv.Addr() + "/livez")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	cancel()
	fmt.Println("shutdown:", <-done)
	// Output:
	// 200 ok
	// shutdown: <nil>
}
