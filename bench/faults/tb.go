package main

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// cmdTB is the testing.TB that internal/testserver needs, for the command:
// Fatal unwinds to runOne (as a panic of type fatal), Skip fails too (a
// missing server binary is an error here), and cleanups run when the
// campaign ends. Methods testserver does not use are left to the embedded
// nil interface.
type cmdTB struct {
	testing.TB
	keep bool
	logf func(format string, args ...any)

	mu       sync.Mutex
	cleanups []func()
	root     string
}

type fatal string

func (t *cmdTB) Helper()                           {}
func (t *cmdTB) Cleanup(f func())                  { t.mu.Lock(); t.cleanups = append(t.cleanups, f); t.mu.Unlock() }
func (t *cmdTB) Logf(format string, args ...any)   { t.logf(format, args...) }
func (t *cmdTB) Fatalf(format string, args ...any) { panic(fatal(fmt.Sprintf(format, args...))) }
func (t *cmdTB) Fatal(args ...any)                 { panic(fatal(fmt.Sprint(args...))) }
func (t *cmdTB) Skipf(format string, args ...any)  { panic(fatal(fmt.Sprintf(format, args...))) }
func (t *cmdTB) Failed() bool                      { return false }

// TempDir returns a new directory under the campaign's root, removed at
// the end unless --keep.
func (t *cmdTB) TempDir() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.root == "" {
		root, err := os.MkdirTemp("", "le-faults-")
		if err != nil {
			panic(fatal(err.Error()))
		}
		t.root = root
	}
	d, err := os.MkdirTemp(t.root, "")
	if err != nil {
		panic(fatal(err.Error()))
	}
	return d
}

func (t *cmdTB) cleanup() {
	t.mu.Lock()
	fs := t.cleanups
	t.cleanups = nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
	if t.root == "" {
		return
	}
	if t.keep {
		t.logf("kept %s", t.root)
		return
	}
	os.RemoveAll(t.root)
}
