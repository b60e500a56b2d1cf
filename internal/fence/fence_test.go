package fence

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestStaleTermIsRejectedAndCounted(t *testing.T) {
	s := Open(filepath.Join(t.TempDir(), "fence"))
	for _, w := range []struct {
		term  int64
		id    string
		stale bool
	}{{1, "a", false}, {1, "a", false}, {2, "b", false}, {1, "a", true}, {2, "b", false}, {3, "a", false}, {2, "b", true}} {
		err := s.Write(w.term, w.id)
		if got := errors.Is(err, ErrStale); got != w.stale {
			t.Fatalf("Write(%d, %s) = %v, want stale %v", w.term, w.id, err, w.stale)
		}
		if !w.stale && err != nil {
			t.Fatal(err)
		}
	}
	st, err := s.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	if st != (State{Highest: 3, Accepted: 5, Rejected: 2}) {
		t.Fatalf("state %+v, want highest 3, 5 accepted, 2 rejected", st)
	}
	log, err := s.ReadLog()
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 7 || log[3].Accepted || log[3].Term != 1 || log[3].ID != "a" || !log[5].Accepted {
		t.Fatalf("log %+v does not record the attempts in order", log)
	}
}

// Writers in parallel (each Write opens and locks the files anew, as
// separate processes do) never get a lower term accepted after a higher one.
func TestConcurrentWritersNeverAcceptOutOfOrder(t *testing.T) {
	s := Open(filepath.Join(t.TempDir(), "fence"))
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := s.Write(int64(i+w), fmt.Sprint("w", w)); err != nil && !errors.Is(err, ErrStale) {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	log, err := s.ReadLog()
	if err != nil {
		t.Fatal(err)
	}
	var last int64
	var accepted, rejected int64
	for i, e := range log {
		if !e.Accepted {
			rejected++
			continue
		}
		accepted++
		if e.Term < last {
			t.Fatalf("entry %d: term %d accepted after %d", i, e.Term, last)
		}
		last = e.Term
	}
	st, err := s.ReadState()
	if err != nil {
		t.Fatal(err)
	}
	if len(log) != 200 || st.Accepted != accepted || st.Rejected != rejected || st.Highest != last {
		t.Fatalf("%d entries, state %+v; log says %d accepted, %d rejected, highest %d", len(log), st, accepted, rejected, last)
	}
}

func TestCorruptStateIsAnErrorNamingTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "fence")
	if err := os.WriteFile(path, []byte("not a state\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := Open(path).Write(1, "a")
	if err == nil || errors.Is(err, ErrStale) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Write on a corrupt state = %v, want an error naming %s", err, path)
	}
}
