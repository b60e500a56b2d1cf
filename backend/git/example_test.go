package git_test

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/b3df926d/leaderelection/backend/git"
	"github.com/b3df926d/leaderelection/lock"
)

// A lock on a branch of a repository reached over https with an access
// token. The lock works under this module's elector, client-go's
// leaderelection.RunOrDie and controller-runtime alike.
func Example() {
	l, err := git.New(context.Background(), git.Options{
		URL:      "https://git.example.com/platform/locks.git",
		Name:     "my-controller", // branch refs/heads/leaderelection/my-controller
		Identity: os.Getenv("POD_NAME"),
		Username: "x-access-token",
		Password: os.Getenv("GIT_TOKEN"),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, _, err := l.Get(ctx)
	switch {
	case lock.IsNotFound(err):
		fmt.Println("no leader yet")
	case err != nil:
		fmt.Println("store unreachable:", err)
	default:
		fmt.Println("leader:", rec.HolderIdentity)
	}
}
