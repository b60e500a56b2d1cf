package gate_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/b3df926d/leaderelection/gate"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

func TestMain(m *testing.M) { os.Exit(testserver.RunTests(m)) }

func configMap(name string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
}

// TestGatedClientWritesOnlyWhileLeading drives a clientset made from a
// gated rest.Config against a real kube-apiserver: writes are refused
// (a 503 API status, IsRefused) and never reach the server while the gate
// is closed, pass while it is open, and are refused again once the
// leader's context ends; reads pass throughout.
func TestGatedClientWritesOnlyWhileLeading(t *testing.T) {
	kube := testserver.SharedKube(t)
	g := gate.New()
	cfg, err := g.Config(kube.Config())
	if err != nil {
		t.Fatal(err)
	}
	gated := kubernetes.NewForConfigOrDie(cfg)
	plain := kubernetes.NewForConfigOrDie(kube.Config())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cms := gated.CoreV1().ConfigMaps("default")
	if _, err := cms.List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("a read through the closed gate: %v", err)
	}
	_, err = cms.Create(ctx, configMap("gate-closed"), metav1.CreateOptions{})
	if !gate.IsRefused(err) || !apierrors.IsServiceUnavailable(err) {
		t.Fatalf("Create through a closed gate = %v, want a refusal (503)", err)
	}
	if _, err := plain.CoreV1().ConfigMaps("default").Get(ctx, "gate-closed", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the refused Create reached the server: Get = %v", err)
	}

	lead, stepDown := context.WithCancel(context.Background())
	g.Open(lead, 1)
	if _, err := cms.Create(ctx, configMap("gate-open"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("Create through an open gate: %v", err)
	}
	if err := cms.Delete(ctx, "gate-open", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("Delete through an open gate: %v", err)
	}
	stepDown()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := cms.Create(ctx, configMap("gate-after"), metav1.CreateOptions{})
		if gate.IsRefused(err) {
			break
		}
		if err != nil {
			t.Fatalf("Create after the step-down = %v, want a refusal", err)
		}
		_ = cms.Delete(ctx, "gate-after", metav1.DeleteOptions{}) // created in the instant before the close ran
		if time.Now().After(deadline) {
			t.Fatal("the gate still lets writes through 10s after the leader's context ended")
		}
	}
	if _, err := cms.Get(ctx, "kube-root-ca.crt", metav1.GetOptions{}); err != nil && !apierrors.IsNotFound(err) {
		t.Fatalf("a read through the closed gate: %v", err)
	}
}

// TestGateCancelsAWriteInFlight holds a Create at a proxy between the
// client and the API server, then closes the gate: the call returns at
// once with a refusal, instead of waiting for the server.
func TestGateCancelsAWriteInFlight(t *testing.T) {
	kube := testserver.SharedKube(t)
	proxy := testserver.StartProxy(t, kube.Addr)
	base := kube.ConfigVia(kube.Config(), proxy.Addr())
	sent := make(chan struct{}, 16)
	base.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			if req.Method == http.MethodPost {
				sent <- struct{}{}
			}
			return next.RoundTrip(req)
		})
	})
	g := gate.New()
	cfg, err := g.Config(base)
	if err != nil {
		t.Fatal(err)
	}
	cms := kubernetes.NewForConfigOrDie(cfg).CoreV1().ConfigMaps("default")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := cms.List(ctx, metav1.ListOptions{}); err != nil { // connect before the stall
		t.Fatal(err)
	}
	g.Open(context.Background(), 1)
	resume := proxy.Stall()
	defer resume()
	done := make(chan error, 1)
	go func() {
		_, err := cms.Create(ctx, configMap("gate-in-flight"), metav1.CreateOptions{})
		done <- err
	}()
	select {
	case <-sent:
	case <-time.After(30 * time.Second):
		t.Fatal("the Create never left the gate")
	}
	g.Close()
	select {
	case err := <-done:
		if !gate.IsRefused(err) {
			t.Fatalf("the Create in flight when the gate closed = %v, want a refusal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the Create in flight was not cancelled when the gate closed")
	}
}

func TestConfigOfNilIsAnError(t *testing.T) {
	if _, err := gate.New().Config(nil); err == nil {
		t.Fatal("Config(nil) succeeded")
	}
	var g *gate.Gate
	if _, err := g.Config(&rest.Config{}); err == nil {
		t.Fatal("a nil gate's Config succeeded")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// wrapper is a transport wrapper of the user's, which exposes what it
// wraps as client-go's own wrappers do.
type wrapper struct{ next http.RoundTripper }

func (w wrapper) RoundTrip(r *http.Request) (*http.Response, error) { return w.next.RoundTrip(r) }
func (w wrapper) WrappedRoundTripper() http.RoundTripper            { return w.next }

// A config gated already (by this gate or another, under a wrapper of the
// user's too) is refused with an error naming WrapTransport; a custom
// Transport and a wrapper of the user's are not a conflict: the gate
// wraps them, and a write while it is closed never reaches the Transport.
func TestConfigRefusesAConfigGatedAlreadyAndWrapsACustomTransport(t *testing.T) {
	var sent []string
	base := &rest.Config{Host: "http://127.0.0.1:1", Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = append(sent, r.Method)
		return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": {"application/json"}},
			Body: io.NopCloser(strings.NewReader(`{"kind":"ConfigMap","apiVersion":"v1","metadata":{"name":"x"}}`)), Request: r}, nil
	})}
	base.Wrap(func(next http.RoundTripper) http.RoundTripper { return wrapper{next} })
	g := gate.New()
	gcfg, err := g.Config(base)
	if err != nil {
		t.Fatalf("a custom Transport and WrapTransport: %v", err)
	}
	wrapped := rest.CopyConfig(gcfg)
	wrapped.Wrap(func(next http.RoundTripper) http.RoundTripper { return wrapper{next} })
	for name, c := range map[string]*rest.Config{"gated": gcfg, "gated, then wrapped": wrapped} {
		for _, other := range []*gate.Gate{g, gate.New()} {
			_, err := other.Config(c)
			if err == nil || !strings.Contains(err.Error(), "WrapTransport") {
				t.Errorf("Config of a config %s = %v, want an error naming WrapTransport", name, err)
			}
		}
	}

	cs := kubernetes.NewForConfigOrDie(gcfg)
	ctx := context.Background()
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, configMap("x"), metav1.CreateOptions{}); !gate.IsRefused(err) {
		t.Fatalf("a Create through a closed gate = %v, want a refusal", err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "x", metav1.GetOptions{}); err != nil {
		t.Fatalf("a Get through a closed gate = %v", err)
	}
	lead, cancel := context.WithCancel(ctx)
	defer cancel()
	g.Open(lead, 1)
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, configMap("x"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("a Create through an open gate = %v", err)
	}
	if want := []string{http.MethodGet, http.MethodPost}; !slices.Equal(sent, want) {
		t.Fatalf("the custom Transport was sent %v, want %v", sent, want)
	}
}
