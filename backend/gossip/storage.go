package gossip

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
)

// fileStorage keeps a voter's promise and accepted record in one file of
// Options.StateDir, replaced atomically (temporary file, fsync, rename,
// fsync of the directory) before the voter replies.
type fileStorage struct {
	dir, path string
}

func newFileStorage(dir, election string) *fileStorage {
	safe := strings.Map(func(r rune) rune {
		if r == '/' || r == '\\' || r == 0 {
			return '_'
		}
		return r
	}, election)
	return &fileStorage{dir: dir, path: filepath.Join(dir, "gossip-"+safe+".json")}
}

func (f *fileStorage) Load() (casp.State, bool, error) {
	raw, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return casp.State{}, false, nil
	}
	if err != nil {
		return casp.State{}, false, err
	}
	var st casp.State
	if err := json.Unmarshal(raw, &st); err != nil {
		return casp.State{}, false, fmt.Errorf("%s: %w", f.path, err)
	}
	return st, true, nil
}

func (f *fileStorage) Save(st casp.State) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(f.dir, ".gossip-state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), f.path); err != nil {
		return err
	}
	d, err := os.Open(f.dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
