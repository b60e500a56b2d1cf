package backendflags

import (
	"context"
	"os"
	"path/filepath"

	"github.com/spf13/pflag"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/lock"
)

// fileBackend: --backend=file, a lock file shared by replicas on one host.
func fileBackend(prog string) *backend {
	path := filepath.Join(os.TempDir(), "leaderelection-"+prog, "leader.json")
	return &backend{
		addFlags: func(fs *pflag.FlagSet) {
			fs.StringVar(&path, "lock-file", path, "--backend=file: the lock's record file (its directory is created).")
		},
		newLock: func(_ context.Context, id string, _ *leaderelection.Option, suffix string) (lock.Interface, error) {
			if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
				return nil, err
			}
			return file.New(context.Background(), file.Options{Path: path + suffix, Identity: id})
		},
	}
}
