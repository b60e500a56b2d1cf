package locktest_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

// agedHarness gives memory locks lock.Aged, lock.WatchState and
// lock.ReadinessChecker: honest ones, or, with lie set, ones that break
// what the suite checks (an age one second too long, a watch that never
// goes down, a readiness name no path can hold).
type agedHarness struct {
	locktest.MemoryHarness
	lie bool

	mu      sync.Mutex
	written map[string]time.Time // raw record → when its write ended
	blocked bool
	subs    []chan struct{} // every Changes channel, signalled when the watch goes down or comes back
}

// signal signals every subscriber, with h.mu held, unless lie is set.
func (h *agedHarness) signal() {
	if h.lie {
		return
	}
	for _, ch := range h.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

type agedLock struct {
	*locktest.MemoryLock
	h *agedHarness

	mu       sync.Mutex
	watching bool
}

func (h *agedHarness) NewLock(t *testing.T, name, identity string) lock.Interface {
	return &agedLock{MemoryLock: h.MemoryHarness.NewLock(t, name, identity).(*locktest.MemoryLock), h: h}
}

func (h *agedHarness) Block(t *testing.T, name string) func() {
	unblock := h.MemoryHarness.Block(t, name)
	h.mu.Lock()
	h.blocked = true
	h.signal()
	h.mu.Unlock()
	return func() {
		unblock()
		h.mu.Lock()
		h.blocked = false
		h.signal()
		h.mu.Unlock()
	}
}

func (l *agedLock) wrote(rec lock.Record, err error) error {
	if err == nil {
		raw, _ := json.Marshal(rec)
		l.h.mu.Lock()
		if l.h.written == nil {
			l.h.written = map[string]time.Time{}
		}
		l.h.written[string(raw)] = time.Now()
		l.h.mu.Unlock()
	}
	return err
}

func (l *agedLock) Create(ctx context.Context, rec lock.Record) error {
	return l.wrote(rec, l.MemoryLock.Create(ctx, rec))
}

func (l *agedLock) Update(ctx context.Context, rec lock.Record) error {
	return l.wrote(rec, l.MemoryLock.Update(ctx, rec))
}

func (l *agedLock) Age(raw []byte) (time.Duration, bool) {
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	at, ok := l.h.written[string(raw)]
	if !ok {
		return 0, false
	}
	if l.h.lie {
		return time.Since(at) + time.Second, true
	}
	return time.Since(at), true
}

// Changes subscribes, and the watch is up from then on, but while the
// store is blocked (unless lie is set); it signals the store's changes and
// the watch's going down and coming back.
func (l *agedLock) Changes(ctx context.Context) <-chan struct{} {
	l.mu.Lock()
	l.watching = true
	l.mu.Unlock()
	in, out := l.MemoryLock.Changes(ctx), make(chan struct{}, 1)
	l.h.mu.Lock()
	l.h.subs = append(l.h.subs, out)
	l.h.mu.Unlock()
	go func() {
		for range in {
			select {
			case out <- struct{}{}:
			default:
			}
		}
		l.h.mu.Lock()
		l.h.subs = slices.DeleteFunc(l.h.subs, func(ch chan struct{}) bool { return ch == out })
		close(out)
		l.h.mu.Unlock()
	}()
	return out
}

func (l *agedLock) Watching() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.h.mu.Lock()
	defer l.h.mu.Unlock()
	return l.watching && (l.h.lie || !l.h.blocked)
}

func (l *agedLock) ReadinessName() string {
	if l.h.lie {
		return "Memory Lock"
	}
	return "memory"
}

func (l *agedLock) Ready() error { return nil }

// The optional interfaces' tests pass on honest locks.
func TestOptionalInterfacesConformance(t *testing.T) {
	if os.Getenv("LOCKTEST_LIE") != "" {
		locktest.RunConformanceTests(t, &agedHarness{lie: true}, locktest.Options{Wait: time.Second})
		return
	}
	locktest.RunConformanceTests(t, &agedHarness{}, locktest.Options{})
}

// The optional interfaces' tests fail on locks that break them: the suite
// run in a child process on lying locks reports each.
func TestOptionalInterfacesConformanceCatchesLies(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestOptionalInterfacesConformance$", "-test.v")
	cmd.Env = append(os.Environ(), "LOCKTEST_LIE=1")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("the suite passed lying locks:\n%s", out)
	}
	for _, want := range []string{
		"--- FAIL: TestOptionalInterfacesConformance/AgedNeverOverstatesAnAge",
		"--- FAIL: TestOptionalInterfacesConformance/WatchStateFollowsTheStore",
		"--- FAIL: TestOptionalInterfacesConformance/ReadinessCheckerNamesItselfAndGetsReady",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the suite on lying locks did not report %q:\n%s", want, out)
		}
	}
}
