//go:build unix

package file

import (
	"context"
	"errors"
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
//
// Every change after Changes returns is signalled: the inotify watch is in
// place, or the polling watcher has taken its first fingerprint, before it
// returns.
func (l *Lock) Changes(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	signal := func() {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
	var w *fsnotify.Watcher
	err := errNoInotify
	if !l.noInotify {
		w, err = fsnotify.NewWatcher()
	}
	if err == nil {
		if err = w.Add(filepath.Dir(l.path)); err != nil {
			w.Close()
		}
	}
	if err != nil {
		go l.poll(ctx, ch, signal, l.fingerprint())
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
					// The fingerprint comes before the signal: a change
					// after it is polled, one before it is read by the
					// receiver the signal wakes.
					w.Close()
					last := l.fingerprint()
					signal()
					l.poll(ctx, ch, signal, last)
					return
				}
			case _, ok := <-w.Errors:
				if !ok {
					w.Close()
					last := l.fingerprint()
					signal()
					l.poll(ctx, ch, signal, last)
					return
				}
				// An overflow may have dropped events: make the reader look.
				signal()
			}
		}
	}()
	return ch
}

// errNoInotify stands for fsnotify's error where a test turned inotify off.
var errNoInotify = errors.New("inotify turned off")

// poll is the watcher where inotify is unavailable. It signals when the
// file's fingerprint differs from last, which the caller takes before
// anything may be missed (before Changes returns): taken here, in the
// goroutine, a change landing before the goroutine ran would be part of the
// baseline and never signalled.
func (l *Lock) poll(ctx context.Context, ch chan struct{}, signal func(), last fingerprint) {
	defer close(ch)
	if l.pollGate != nil {
		<-l.pollGate
	}
	t := time.NewTicker(l.opts.PollInterval)
	defer t.Stop()
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
