//go:build unix

package shard_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/shard"
)

// Every replica runs the same Run with the same name, shard count and
// store; each works exactly the shards it owns, each with its own
// context and fencing term. Here one replica, alone, owns all three; a
// second replica started the same way would take its share.
func ExampleRun() {
	dir, _ := os.MkdirTemp("", "shard-example")
	defer os.RemoveAll(dir)
	locks := func(name string, fresh bool) (lock.Interface, error) {
		return file.New(context.Background(), file.Options{Path: filepath.Join(dir, name), Identity: "replica-a"})
	}

	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	var started []int
	err := shard.Run(ctx, shard.Options{Name: "reconciler", Locks: locks, Slots: 4}, 3,
		func(ctx context.Context, s int) {
			term, _ := shard.TermFrom(ctx) // hand it to the store the shard writes to
			mu.Lock()
			started = append(started, s)
			if len(started) == 3 {
				slices.Sort(started)
				fmt.Println("working shards", started, "in term", term)
				cancel() // a real replica works until it is stopped
			}
			mu.Unlock()
			<-ctx.Done()
		})
	fmt.Println("Run returned:", err)
	// Output:
	// working shards [0 1 2] in term 1
	// Run returned: <nil>
}

// Ownership shows what a replica runs and the assignment it read; a
// health server serving it (RunOrDie does) shows the same on /status, and
// the shard metrics on /metrics.
func ExampleOwnership() {
	dir, _ := os.MkdirTemp("", "shard-example")
	defer os.RemoveAll(dir)
	locks := func(name string, fresh bool) (lock.Interface, error) {
		return file.New(context.Background(), file.Options{Path: filepath.Join(dir, name), Identity: "replica-a"})
	}

	var own shard.Ownership
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		done <- shard.Run(ctx, shard.Options{Name: "reconciler", Locks: locks, Slots: 4, Ownership: &own}, 3,
			func(ctx context.Context, s int) { <-ctx.Done() })
	}()
	for len(own.Status().Shards.Owned) < 3 {
		time.Sleep(10 * time.Millisecond) // a program reads it when asked
	}
	sh := own.Status().Shards
	fmt.Println("slot", sh.Slot, "generation", sh.Generation, "owned", sh.Owned)
	for _, m := range sh.Members {
		fmt.Println("member", m.Identity, "in slot", m.Slot, "has shards", m.Shards)
	}
	cancel()
	fmt.Println("Run returned:", <-done)
	fmt.Println("owned after Run:", len(own.Status().Shards.Owned), "slot", own.Status().Shards.Slot)
	// Output:
	// slot 1 generation 1 owned [{0 1} {1 1} {2 1}]
	// member replica-a in slot 1 has shards [0 1 2]
	// Run returned: <nil>
	// owned after Run: 0 slot -1
}
