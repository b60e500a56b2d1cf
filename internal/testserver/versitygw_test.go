package testserver

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// A port another process took before versitygw bound it answers a dial,
// but not as versitygw: readiness says so instead of handing the test a
// server that is not its own.
func TestWaitListeningRefusesAnotherProcessOnThePort(t *testing.T) {
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Server", "something-else")
		w.WriteHeader(http.StatusForbidden)
	}))
	defer other.Close()
	addr := strings.TrimPrefix(other.URL, "http://")
	err := waitListening(addr, make(chan struct{}), 5*time.Second)
	if err == nil || !strings.Contains(err.Error(), "another process") {
		t.Fatalf("waitListening on a port served by another process: %v; want an error saying so", err)
	}
}
