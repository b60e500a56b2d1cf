package k8s_test

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/b3df926d/leaderelection/backend/k8s"
	writegate "github.com/b3df926d/leaderelection/gate"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

func TestMain(m *testing.M) { os.Exit(testserver.RunTests(m)) }

// server is the package's shared kube-apiserver with an admin client.
type server struct {
	kube  *testserver.Kube
	admin kubernetes.Interface
}

func sharedServer(t *testing.T) *server {
	t.Helper()
	kube := testserver.SharedKube(t)
	return &server{kube: kube, admin: testserver.Clientset(t, kube.Config())}
}

// namespace creates a namespace of the test's own.
func (s *server) namespace(t testing.TB) string {
	t.Helper()
	return testserver.CreateNamespace(t, s.admin, "t-"+randomSuffix(t))
}

func randomSuffix(t testing.TB) string {
	t.Helper()
	tt, ok := t.(*testing.T)
	if !ok {
		return "bench"
	}
	return locktest.Name(tt)
}

// newLock returns a lock on namespace/name through cfg, closed when t ends.
func newLock(t testing.TB, cfg *rest.Config, namespace, name, identity string) *k8s.Lock {
	t.Helper()
	l, err := k8s.New(context.Background(), k8s.Options{
		Client:        testserver.Clientset(t, cfg),
		Namespace:     namespace,
		Name:          name,
		Identity:      identity,
		DisableEvents: true,
	})
	if err != nil {
		t.Fatalf("k8s.New: %v", err)
	}
	t.Cleanup(l.Close)
	return l
}

// harness runs the conformance suite with every lock's traffic through a
// proxy, so that Block can stall it.
type harness struct {
	s         *server
	namespace string
	proxy     *testserver.Proxy
	cfg       *rest.Config
}

func (h *harness) NewLock(t *testing.T, name, identity string) lock.Interface {
	return newLock(t, h.cfg, h.namespace, name, identity)
}

// Corrupt leaves a Lease that names a holder but no duration or renew time:
// a record nobody can tell the expiry of.
func (h *harness) Corrupt(t *testing.T, name string) {
	t.Helper()
	ctx := context.Background()
	leases := h.s.admin.CoordinationV1().Leases(h.namespace)
	lease, err := leases.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("Corrupt: %v", err)
	}
	holder := "corrupt"
	lease.Spec = coordinationv1.LeaseSpec{HolderIdentity: &holder}
	if _, err := leases.Update(ctx, lease, metav1.UpdateOptions{}); err != nil {
		t.Fatalf("Corrupt: %v", err)
	}
}

// Stored returns the Lease's spec and resourceVersion as JSON: any write
// changes it.
func (h *harness) Stored(t *testing.T, name string) []byte {
	t.Helper()
	lease, err := h.s.admin.CoordinationV1().Leases(h.namespace).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatalf("Stored: %v", err)
	}
	b, err := json.Marshal(struct {
		RV   string
		Spec coordinationv1.LeaseSpec
	}{lease.ResourceVersion, lease.Spec})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Block stalls the proxy and drops its connections, as an API server that
// stopped answering does in time: calls hang, and the watch goes down.
func (h *harness) Block(t *testing.T, name string) (unblock func()) {
	resume := h.proxy.Stall()
	h.proxy.CutConnections()
	return resume
}

// Delete deletes the Lease through the API, as kubectl delete lease does.
func (h *harness) Delete(t *testing.T, name string) {
	t.Helper()
	if err := h.s.admin.CoordinationV1().Leases(h.namespace).Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
		t.Fatalf("deleting lease %s/%s: %v", h.namespace, name, err)
	}
}

func TestConformance(t *testing.T) {
	s := sharedServer(t)
	proxy := testserver.StartProxy(t, s.kube.Addr)
	h := &harness{
		s:         s,
		namespace: s.namespace(t),
		proxy:     proxy,
		cfg:       s.kube.ConfigVia(s.kube.Config(), proxy.Addr()),
	}
	locktest.RunConformanceTests(t, h, locktest.Options{})
}

func TestNewRejectsMissingFields(t *testing.T) {
	_, err := k8s.New(context.Background(), k8s.Options{})
	if err == nil {
		t.Fatal("New with empty Options succeeded")
	}
	for _, field := range []string{"Client", "Namespace", "Name"} {
		if !strings.Contains(err.Error(), field) {
			t.Errorf("error %q does not name %s", err, field)
		}
	}
}

// An empty Identity is lock.DefaultIdentity(), as for every backend. New
// makes no API call, so the client points nowhere.
func TestEmptyIdentityDefaults(t *testing.T) {
	t.Setenv("POD_NAME", "pod-x")
	client, err := kubernetes.NewForConfig(&rest.Config{Host: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := k8s.New(context.Background(), k8s.Options{Client: client, Namespace: "ns", Name: "n"})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if got := l.Identity(); got != "pod-x" || got != lock.DefaultIdentity() {
		t.Fatalf("Identity() = %q, want lock.DefaultIdentity() %q", got, lock.DefaultIdentity())
	}
}

// A lock's client built from a gated rest.Config is refused with an error
// naming Client and gate.Config (its renewals would be refused whenever
// the gate is closed); one built from the ungated config, with a token, a
// user agent and a wrapper of the user's own, is not. New makes no API
// call, so the client points nowhere.
func TestNewRefusesAClientThroughAWriteGate(t *testing.T) {
	base := &rest.Config{Host: "http://127.0.0.1:1", BearerToken: "t", UserAgent: "ua",
		WrapTransport: func(rt http.RoundTripper) http.RoundTripper { return rt }}
	gated, err := writegate.New().Config(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		cfg     *rest.Config
		refused bool
	}{{"ungated", base, false}, {"gated", gated, true}} {
		client, err := kubernetes.NewForConfig(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		l, err := k8s.New(context.Background(), k8s.Options{Client: client, Namespace: "ns", Name: "n"})
		if !tc.refused {
			if err != nil {
				t.Fatalf("%s: New = %v", tc.name, err)
			}
			l.Close()
			continue
		}
		if err == nil || !strings.Contains(err.Error(), "Client") || !strings.Contains(err.Error(), "gate.Config") {
			t.Fatalf("%s: New = %v; want an error naming Client and gate.Config", tc.name, err)
		}
	}
}

func TestValidateDurations(t *testing.T) {
	for _, tc := range []struct {
		lease, renew time.Duration
		ok           bool
	}{
		{15 * time.Second, 10 * time.Second, true},
		{3 * time.Second, 2 * time.Second, true},
		{2500 * time.Millisecond, 2 * time.Second, false}, // client-go stores 2s
		{2500 * time.Millisecond, 1500 * time.Millisecond, true},
		{500 * time.Millisecond, 100 * time.Millisecond, false},
	} {
		err := k8s.ValidateDurations(tc.lease, tc.renew)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateDurations(%v, %v) = %v, want ok=%v", tc.lease, tc.renew, err, tc.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "LeaseDuration") {
			t.Errorf("error %q does not name LeaseDuration", err)
		}
	}
}
