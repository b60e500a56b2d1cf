//go:build unix

package file

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Changes signals after the record file is replaced or removed. It watches
// the directory with inotify (renames replace the file's inode, so watching
// the file itself would lose track), and polls the file's modification time,
// size and inode where inotify is unavailable, or once the directory's
// inotify watch is lost (the directory removed or moved). The channel is
// closed only when ctx ends.
func (l *Lock) Changes(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	signal := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(l.path)); err != nil {
			w.Close()
		}
	}
	if err != nil {
		go l.poll(ctx, ch, signal)
		return ch
	}
	dir := filepath.Clean(filepath.Dir(l.path))
	go func() {
		for {
			select {
			case <-ctx.Done():
				w.Close()
				close(ch)
				return
			case ev, ok := <-w.Events:
				if ok && filepath.Clean(ev.Name) == l.path {
					signal()
				}
				if !ok || (filepath.Clean(ev.Name) == dir && ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0) {
					// The directory's watch is gone (the directory was
					// removed or moved): poll from now on, so that the
					// channel stays a working watch until ctx ends.
					w.Close()
					signal()
					l.poll(ctx, ch, signal)
					return
				}
			case _, ok := <-w.Errors:
				if !ok {
					w.Close()
					l.poll(ctx, ch, signal)
					return
				}
				// An overflow may have dropped events: make the reader look.
				signal()
			}
		}
	}()
	return ch
}

// poll is the watcher where inotify is unavailable.
func (l *Lock) poll(ctx context.Context, ch chan struct{}, signal func()) {
	defer close(ch)
	t := time.NewTicker(l.opts.PollInterval)
	defer t.Stop()
	last := l.fingerprint()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if fp := l.fingerprint(); fp != last {
				last = fp
				signal()
			}
		}
	}
}

type fingerprint struct {
	mod  time.Time
	size int64
	ino  uint64
}

func (l *Lock) fingerprint() fingerprint {
	fi, err := os.Stat(l.path)
	if err != nil {
		return fingerprint{}
	}
	fp := fingerprint{mod: fi.ModTime(), size: fi.Size()}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		fp.ino = st.Ino
	}
	return fp
}
