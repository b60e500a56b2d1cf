package leaderelection

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/b3df926d/leaderelection/backend/k8s"
	writegate "github.com/b3df926d/leaderelection/gate"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

// gatedWriter is a leader's function that creates ConfigMaps labelled with
// its identity through a gated client, every 50ms, until its context ends.
type gatedWriter struct {
	id               string
	client           kubernetes.Interface
	written, refused atomic.Int32
	starts           atomic.Int32
	lead             atomic.Pointer[context.Context]
	otherErr         atomic.Pointer[error]
	seq              atomic.Int64
	ns, lease        string
}

func (w *gatedWriter) run(ctx context.Context) {
	w.starts.Add(1)
	w.lead.Store(&ctx)
	for ctx.Err() == nil {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s-%s-%d", w.lease, w.id, w.seq.Add(1)),
			Namespace: w.ns,
			Labels:    map[string]string{"writer": w.lease + "-" + w.id},
		}}
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := w.client.CoreV1().ConfigMaps(w.ns).Create(wctx, cm, metav1.CreateOptions{})
		cancel()
		switch {
		case err == nil:
			w.written.Add(1)
		case writegate.IsRefused(err):
			w.refused.Add(1)
		case ctx.Err() == nil:
			w.otherErr.Store(&err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond): // the pace of the work, not a synchronisation
		}
	}
}

// landed counts the ConfigMaps w's writes created, as the API server has
// them.
func landed(t *testing.T, plain kubernetes.Interface, w *gatedWriter) int {
	t.Helper()
	l, err := plain.CoreV1().ConfigMaps(w.ns).List(context.Background(), metav1.ListOptions{LabelSelector: "writer=" + w.lease + "-" + w.id})
	if err != nil {
		t.Fatalf("listing %s's writes: %v", w.id, err)
	}
	return len(l.Items)
}

// candidateOn runs Run for id on the Lease lease, its lock reaching the
// API server through leaseCfg, its gated writes through writeCfg.
func candidateOn(t *testing.T, leaseCfg, writeCfg *rest.Config, lease, id string, recover bool) (*gatedWriter, *Leadership, <-chan error) {
	t.Helper()
	g := writegate.New()
	gcfg, err := g.Config(writeCfg)
	if err != nil {
		t.Fatal(err)
	}
	w := &gatedWriter{id: id, client: kubernetes.NewForConfigOrDie(gcfg), ns: "default", lease: lease}
	l, err := k8s.New(context.Background(), k8s.Options{Client: kubernetes.NewForConfigOrDie(leaseCfg), Namespace: "default", Name: lease, Identity: id, DisableEvents: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	le := &Leadership{}
	opt := Option{
		Lock: l, Port: NoHealthServer, Leadership: le, Gate: g, Recover: recover,
		LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
		Run: w.run,
	}
	if recover {
		opt.RecoverDeadline = 30 * time.Second
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc, done := make(chan error, 1), make(chan struct{})
	go func() { defer close(done); errc <- Run(ctx, opt) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(testTimeout):
			t.Errorf("%s: Run did not return after cancel", id)
		}
	})
	return w, le, errc
}

func waitReal(t *testing.T, what string, limit time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Recovery against a real kube-apiserver, the leader's Lease requests
// stalled at a proxy (a store that stops answering) while its gated writes
// go straight to the server. Nobody else running: the leader stops
// leading at its renew deadline, its writes are refused meanwhile, and it
// leads again in the same term once the proxy resumes, its function never
// restarted. With a follower that still reaches the server: it takes
// over, and not one of the old leader's gated writes reaches the server
// after its term began; the old leader's function is cancelled when its
// Lease requests get through again, and its Run ends with ErrLeaseLost.
func TestRecoverOnKubeAPIServer(t *testing.T) {
	kube := testserver.StartKube(t)
	plain := kubernetes.NewForConfigOrDie(kube.Config())

	t.Run("nobody took over", func(t *testing.T) {
		proxy := testserver.StartProxy(t, kube.Addr)
		a, la, _ := candidateOn(t, kube.ConfigVia(kube.Config(), proxy.Addr()), kube.Config(), "recover-alone", "a", true)
		waitReal(t, "a to lead and write", 30*time.Second, func() bool { return la.IsLeader() && a.written.Load() > 0 })
		term := la.Term()
		lead := *a.lead.Load()
		resume := proxy.Stall()
		waitReal(t, "a to stop leading", 10*time.Second, func() bool { return !la.IsLeader() && la.Status().Recovering })
		refusedBefore := a.refused.Load()
		waitReal(t, "a's writes to be refused while it recovers", 10*time.Second, func() bool { return a.refused.Load() > refusedBefore })
		time.Sleep(3 * time.Second) // the outage outlasts the lease (3s): part of the fault, not a wait for a condition
		if lead.Err() != nil || !la.Status().Recovering {
			t.Fatalf("during the outage: a's function context %v, recovering %v; want running and recovering", lead.Err(), la.Status().Recovering)
		}
		resume()
		waitReal(t, "a to lead again", 15*time.Second, la.IsLeader)
		writtenAtResume := a.written.Load()
		waitReal(t, "a's writes to pass again", 10*time.Second, func() bool { return a.written.Load() > writtenAtResume })
		if la.Term() != term || a.starts.Load() != 1 || lead.Err() != nil {
			t.Fatalf("after the outage: term %d (was %d), %d function starts, context %v; want the same term, one start, running", la.Term(), term, a.starts.Load(), lead.Err())
		}
		if p := a.otherErr.Load(); p != nil {
			t.Fatalf("a gated write failed other than by a refusal: %v", *p)
		}
	})

	t.Run("another replica took over", func(t *testing.T) {
		proxy := testserver.StartProxy(t, kube.Addr)
		a, la, aDone := candidateOn(t, kube.ConfigVia(kube.Config(), proxy.Addr()), kube.Config(), "recover-takeover", "a", true)
		waitReal(t, "a to lead and write", 30*time.Second, func() bool { return la.IsLeader() && a.written.Load() > 0 })
		lead := *a.lead.Load()
		b, lb, _ := candidateOn(t, kube.Config(), kube.Config(), "recover-takeover", "b", false)
		waitReal(t, "b to see a", 10*time.Second, func() bool { return lb.Leader() == "a" })
		resume := proxy.Stall()
		waitReal(t, "b to take over", 20*time.Second, func() bool { return lb.IsLeader() && b.starts.Load() == 1 })
		atTakeover := landed(t, plain, a)
		if lead.Err() != nil {
			t.Fatalf("a's function was cancelled before a learnt of the takeover: %v", lead.Err())
		}
		time.Sleep(time.Second) // a keeps trying to write while cut off: part of the fault
		resume()
		select {
		case err := <-aDone:
			if !errors.Is(err, ErrLeaseLost) {
				t.Fatalf("a's Run = %v, want ErrLeaseLost", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a's Run did not end after its Lease requests got through again")
		}
		if lead.Err() == nil {
			t.Fatal("a's function is still running after a lost the lease")
		}
		if got := landed(t, plain, a); got != atTakeover {
			t.Fatalf("%d of a's gated writes reached the API server after b's term began", got-atTakeover)
		}
		if a.refused.Load() == 0 {
			t.Fatal("no write of a was refused: the test did not exercise the gate")
		}
		if la.Term() >= lb.Term() {
			t.Fatalf("a's term %d, b's %d: want b's higher", la.Term(), lb.Term())
		}
	})
}
