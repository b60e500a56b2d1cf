package main

import (
	"context"
	"log"
	"os"
	"path/filepath"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/file"
)

func main() {
	// The replicas on this host share one record file (for example under
	// /var/run/myctl); its directory must exist.
	dir := filepath.Join(os.TempDir(), "myctl")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Fatal(err)
	}
	// The identity defaults to $POD_NAME, else <hostname>_<pid>.
	lock, err := file.New(context.Background(), file.Options{Path: filepath.Join(dir, "leader.json")})
	if err != nil {
		log.Fatal(err)
	}
	leaderelection.RunOrDie(leaderelection.Option{
		Lock:            lock,
		ReleaseOnCancel: true,
		Run: func(ctx context.Context) {
			term, _ := leaderelection.TermFrom(ctx) // fencing token
			runController(ctx, term)                // return when ctx is cancelled
		},
	})
}

// runController is your controller: it works until ctx is cancelled, and
// hands term to the stores it writes to.
func runController(ctx context.Context, term int64) {
	log.Printf("leading in term %d", term)
	<-ctx.Done()
}
