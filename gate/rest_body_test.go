package gate_test

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/b3df926d/leaderelection/gate"
)

// A write whose response headers arrived but whose body the server holds
// when the gate closes: the body read is cancelled, and the error
// client-go returns ("reading response body") is a refusal too.
func TestGateRefusesAWriteWhoseResponseIsCutOff(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write([]byte(`{"kind":"ConfigMap","apiVersion":"v1",`))
		w.(http.Flusher).Flush()
		<-r.Context().Done() // the rest of the body never comes
	}))
	srv.EnableHTTP2 = true // as the API server: a cancelled HTTP/2 body read says context.Canceled, not the gate's cause
	srv.StartTLS()
	defer srv.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	base := &rest.Config{Host: srv.URL, TLSClientConfig: rest.TLSClientConfig{CAData: ca}}
	headers := make(chan struct{}, 1)
	base.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(req *http.Request) (*http.Response, error) {
			resp, err := next.RoundTrip(req)
			if err == nil && req.Method == http.MethodPost {
				headers <- struct{}{}
			}
			return resp, err
		})
	})
	g := gate.New()
	cfg, err := g.Config(base)
	if err != nil {
		t.Fatal(err)
	}
	cms := kubernetes.NewForConfigOrDie(cfg).CoreV1().ConfigMaps("default")
	g.Open(context.Background(), 1)
	done := make(chan error, 1)
	go func() {
		_, err := cms.Create(context.Background(), configMap("cut-off"), metav1.CreateOptions{})
		done <- err
	}()
	select {
	case <-headers:
	case <-time.After(30 * time.Second):
		t.Fatal("the response headers never arrived")
	}
	g.Close()
	select {
	case err := <-done:
		if !gate.IsRefused(err) {
			t.Fatalf("the Create whose body was cut off by the gate = %v, want a refusal", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the Create was not cancelled when the gate closed")
	}
}
