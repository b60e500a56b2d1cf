//go:build unix

package file_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// Two candidates on one host share a record file; the first to create it
// holds the lock, and the other's create is a conflict.
func ExampleNew() {
	dir, _ := os.MkdirTemp("", "file-lock-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "leader.json")

	ctx := context.Background()
	a, err := file.New(ctx, file.Options{Path: path, Identity: "replica-a"})
	if err != nil {
		panic(err)
	}
	b, _ := file.New(ctx, file.Options{Path: path, Identity: "replica-b"})
	fmt.Println("a creates:", a.Create(ctx, locktest.NewRecord("replica-a", 1)))
	err = b.Create(ctx, locktest.NewRecord("replica-b", 1))
	fmt.Println("b conflicts:", err != nil)
	rec, _, _ := b.Get(ctx)
	fmt.Println("holder:", rec.HolderIdentity)
	// Output:
	// a creates: <nil>
	// b conflicts: true
	// holder: replica-a
}
