// Package backendflags chooses a lock backend from command-line flags, for
// the example and cmd/leaderelection: --backend picks one, each backend
// registers its own flags (--lock-file, --kubeconfig, --s3-*, --git-*), and
// Lock builds the chosen one.
//
// A backend is one file here with a constructor returning *backend, listed
// once in all.
package backendflags

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/spf13/pflag"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/lock"
)

// backend is one choice of --backend: its flags and how to build its lock.
type backend struct {
	addFlags func(fs *pflag.FlagSet)
	// newLock returns the lock for identity id, its store object's name
	// followed by suffix (see CompanionLock; "" for the lock itself); a
	// nil lock with a nil error means Option's own Kubernetes Lease
	// (KubeClient).
	newLock func(ctx context.Context, id string, opt *leaderelection.Option, suffix string) (lock.Interface, error)
}

// all lists every backend; prog names the program, for defaults that must
// not collide between programs (the lock file, the S3 key).
func all(prog string) map[string]*backend {
	return map[string]*backend{
		"file":   fileBackend(prog),
		"k8s":    kubeBackend(),
		"git":    gitBackend(),
		"s3":     s3Backend(prog),
		"gossip": gossipBackend(prog),
	}
}

// Flags holds --backend and every backend's flags.
type Flags struct {
	kind     string
	backends map[string]*backend
}

// New returns the flags of every backend for program prog, which names the
// defaults: the lock file $TMPDIR/leaderelection-<prog>/leader.json and the
// S3 key leaderelection/<prog>.json. --backend defaults to "file".
func New(prog string) *Flags {
	return &Flags{kind: "file", backends: all(prog)}
}

// Names returns the backends --backend accepts, sorted.
func (f *Flags) Names() []string {
	names := make([]string, 0, len(f.backends))
	for name := range f.backends {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// AddFlags registers --backend and every backend's flags on fs.
func (f *Flags) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.kind, "backend", f.kind, "Lock backend: "+strings.Join(f.Names(), ", ")+".")
	for _, name := range f.Names() {
		f.backends[name].addFlags(fs)
	}
}

// Kind returns the chosen backend's name (--backend).
func (f *Flags) Kind() string { return f.kind }

// Lock builds the chosen backend's lock for identity id, after the flags
// are parsed. A nil lock with a nil error means a Kubernetes Lease on
// opt.LeaseLockNamespace/opt.LeaseLockName: Lock has set opt.KubeClient,
// and leaderelection.Run builds the Lease when opt.Lock is nil. Errors name
// the flag at fault.
func (f *Flags) Lock(ctx context.Context, id string, opt *leaderelection.Option) (lock.Interface, error) {
	return f.CompanionLock(ctx, id, opt, "")
}

// CompanionLock builds a second record in the chosen backend's store, next
// to Lock's: its object is named by the lock's followed by suffix (the
// file PATH+suffix, the S3 key KEY+suffix, the git lock NAME+suffix and
// its branch BRANCH+suffix when --git-branch is set). A nil lock with a
// nil error means a Kubernetes Lease named opt.LeaseLockName+suffix, which
// the caller builds. The gossip backend keeps one record per election and
// has no companion. Reads are never served from a cache.
func (f *Flags) CompanionLock(ctx context.Context, id string, opt *leaderelection.Option, suffix string) (lock.Interface, error) {
	b, ok := f.backends[f.kind]
	if !ok {
		return nil, fmt.Errorf("--backend=%q: want one of %s", f.kind, strings.Join(f.Names(), ", "))
	}
	l, err := b.newLock(ctx, id, opt, suffix)
	if err != nil {
		return nil, fmt.Errorf("--backend=%s: %w", f.kind, err)
	}
	return l, nil
}
