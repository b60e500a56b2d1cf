package outage_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/gate"
	"github.com/b3df926d/leaderelection/internal/benchtest"
)

// mode is how the replicas of a run are configured.
type mode struct {
	name string
	// recover: Option.Recover (and a gate); recampaign: Option.Recampaign.
	// Neither: a lost lease ends Run, as RunOrDie exits, and the replica
	// is started again as a Deployment would.
	recover, recampaign bool
	// ungated: the leader's function writes with a client that bypasses
	// the gate (the elector still drives one, as Recover requires): what
	// recovery without a write gate would let through.
	ungated bool
	// replicas in an outage run (0: --replicas): 1 is a leader alone,
	// whom nobody can take over from.
	replicas int
}

// requests counts the API requests one replica's informer and writer got
// an answer to (so they reached the API server) after a mark.
type requests struct {
	mu      sync.Mutex
	since   time.Time // zero: not counting yet
	counts  map[string]int
	resumed time.Time // first informer request answered after since
}

// kind names a request as the informer and writer make them. A relist is
// a list, or a watch that streams the collection first (the reflector's
// WatchListClient mode, on by default since client-go 1.35): both are
// counted as "list"; "watch" is a watch resumed from a resourceVersion.
func kind(req *http.Request) string {
	q := req.URL.Query()
	switch {
	case req.Method != http.MethodGet:
		return "write"
	case q.Get("watch") == "true" && q.Get("sendInitialEvents") == "true":
		return "list"
	case q.Get("watch") == "true":
		return "watch"
	case strings.HasSuffix(req.URL.Path, "/configmaps"):
		return "list"
	}
	return "get"
}

func (c *requests) wrap(cfg *rest.Config) *rest.Config {
	out := rest.CopyConfig(cfg)
	out.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(req)
			if err == nil {
				c.answered(kind(req))
			}
			return resp, err
		})
	})
	return out
}

func (c *requests) answered(k string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.since.IsZero() {
		return
	}
	c.counts[k]++
	if k != "write" && k != "get" && c.resumed.IsZero() {
		c.resumed = time.Now()
	}
}

// mark starts counting from now.
func (c *requests) mark() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.since, c.counts, c.resumed = time.Now(), map[string]int{}, time.Time{}
}

func (c *requests) get(k string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.counts[k]
}

// resumedAt returns when the informer first got an answer after the mark
// (zero if not yet).
func (c *requests) resumedAt() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.resumed
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// replica is one candidate, run as Run calls in this process (not as a
// process of its own): when Run ends with an error, as RunOrDie would exit,
// the replica starts again from scratch (new clients, new informers, new
// gate), as a Deployment restarts a container, and that counts as a
// process restart.
type replica struct {
	id        string
	m         mode
	ns, lease string
	// leaseCfg reaches the API server for the Lease, appCfg for the
	// informer and the writes (both through a proxy, or not).
	leaseCfg, appCfg *rest.Config

	reqs       requests
	leadership atomic.Pointer[leaderelection.Leadership] // the current incarnation's
	synced     atomic.Bool                               // the current incarnation's informer has synced
	restarts   atomic.Int32
	starts     atomic.Int32 // the leader's function started
	lead       atomic.Pointer[context.Context]
	ended      atomic.Pointer[time.Time] // when the leader's function last saw its context end
	written    atomic.Int32              // writes that succeeded
	refused    atomic.Int32              // writes the gate refused
	seq        atomic.Int64
	lastErr    atomic.Pointer[error] // the last error that ended Run
}

// writeEvery is the pace of the leader's work: one ConfigMap created.
const writeEvery = 100 * time.Millisecond

// run runs incarnations until ctx ends.
func (r *replica) run(ctx context.Context, t benchtest.Timing) {
	for {
		err := r.incarnation(ctx, t)
		if ctx.Err() != nil {
			return
		}
		r.lastErr.Store(&err)
		r.restarts.Add(1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second): // a restart's delay, as a kubelet's backoff: part of the model
		}
	}
}

func (r *replica) incarnation(ctx context.Context, t benchtest.Timing) error {
	r.synced.Store(false)
	g := gate.New()
	gcfg, err := g.Config(r.reqs.wrap(r.appCfg))
	if err != nil {
		return err
	}
	app := kubernetes.NewForConfigOrDie(gcfg)
	writer := app
	if r.m.ungated {
		writer = kubernetes.NewForConfigOrDie(r.reqs.wrap(r.appCfg))
	}
	l, err := k8s.New(ctx, k8s.Options{Client: kubernetes.NewForConfigOrDie(r.leaseCfg), Namespace: r.ns, Name: r.lease, Identity: r.id, DisableEvents: true})
	if err != nil {
		return err
	}
	defer l.Close()
	le := &leaderelection.Leadership{}
	r.leadership.Store(le)
	opt := leaderelection.Option{
		Lock: l, Port: leaderelection.NoHealthServer, Leadership: le, Gate: g,
		LeaseDuration: t.LeaseDuration, RenewDeadline: t.RenewDeadline, RetryPeriod: t.RetryPeriod,
		Recover: r.m.recover, Recampaign: r.m.recampaign,
		Standby: func(ctx context.Context, ready func()) {
			f := informers.NewSharedInformerFactoryWithOptions(app, 0, informers.WithNamespace(r.ns))
			inf := f.Core().V1().ConfigMaps().Informer()
			f.Start(ctx.Done())
			if cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
				r.synced.Store(true)
				ready()
			}
			<-ctx.Done()
			f.Shutdown()
		},
		Run: func(ctx context.Context) { r.work(ctx, writer) },
	}
	return leaderelection.Run(ctx, opt)
}

// work is the leader's function: it creates a ConfigMap labelled with
// the replica's identity every writeEvery until its context ends.
func (r *replica) work(ctx context.Context, c kubernetes.Interface) {
	r.starts.Add(1)
	r.lead.Store(&ctx)
	tick := time.NewTicker(writeEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			now := time.Now()
			r.ended.Store(&now)
			return
		case <-tick.C:
		}
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name:   fmt.Sprintf("%s-%s-%d", r.lease, r.id, r.seq.Add(1)),
			Labels: map[string]string{"writer": r.lease + "-" + r.id},
		}}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.CoreV1().ConfigMaps(r.ns).Create(wctx, cm, metav1.CreateOptions{})
		cancel()
		switch {
		case err == nil:
			r.written.Add(1)
		case gate.IsRefused(err):
			r.refused.Add(1)
		}
	}
}

// leading returns whether the replica's current incarnation leads, and
// its term.
func (r *replica) leading() (bool, int64) {
	le := r.leadership.Load()
	if le == nil {
		return false, 0
	}
	st := le.Status()
	return st.Leading, st.Term
}

// fleet is the replicas of a run, each run until stop.
type fleet struct {
	rs   []*replica
	stop func()
}

func startFleet(rs []*replica, t benchtest.Timing) *fleet {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, r := range rs {
		wg.Add(1)
		go func() { defer wg.Done(); r.run(ctx, t) }()
	}
	return &fleet{rs: rs, stop: func() { cancel(); wg.Wait() }}
}

// leader returns the replica that leads and its term, or nil.
func (f *fleet) leader() (*replica, int64) {
	for _, r := range f.rs {
		if ok, term := r.leading(); ok {
			return r, term
		}
	}
	return nil, 0
}

func (f *fleet) restarts() int {
	n := 0
	for _, r := range f.rs {
		n += int(r.restarts.Load())
	}
	return n
}

func (f *fleet) starts() int {
	n := 0
	for _, r := range f.rs {
		n += int(r.starts.Load())
	}
	return n
}

// waitFor polls cond every 5ms (the resolution of the times measured)
// until it holds, or fails tb after limit.
func waitFor(tb testing.TB, what string, limit time.Duration, cond func() bool) time.Time {
	tb.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(5 * time.Millisecond) // polling state that has no notification
	}
	return time.Now()
}
