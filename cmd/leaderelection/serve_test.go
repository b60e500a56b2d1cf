package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/internal/poll"
	"github.com/b3df926d/leaderelection/internal/testserver"
)

var httpClient = http.Client{Timeout: 2 * time.Second}

// leader asks a serve process's /leader; ok is false if it does not answer.
func leader(port int) (code int, body healthz.Leader, ok bool) {
	resp, err := httpClient.Get("http://127.0.0.1:" + strconv.Itoa(port) + "/leader")
	if err != nil {
		return 0, body, false
	}
	defer resp.Body.Close()
	if json.NewDecoder(resp.Body).Decode(&body) != nil {
		return 0, body, false
	}
	return resp.StatusCode, body, true
}

// TestServeLeaderFollowsLeadership runs two sidecars on one lock: /leader
// answers 200 on the leader and 503 on the other, with the same leader and
// term in both bodies, and flips when the leader stops.
func TestServeLeaderFollowsLeadership(t *testing.T) {
	dir := t.TempDir()
	lockFile := filepath.Join(dir, "leader.json")
	ports := map[string]int{"a": testserver.FreePort(t), "b": testserver.FreePort(t)}
	serve := func(id string) *proc {
		return start(t, dir, id, append([]string{"serve", "--id=" + id, "--lock-file=" + lockFile, "--health-bind-address=127.0.0.1", "--port=" + strconv.Itoa(ports[id])}, fast...)...)
	}
	procs := map[string]*proc{"a": serve("a")}
	poll.Until(t, "a to lead", 30*time.Second, func() bool { code, _, _ := leader(ports["a"]); return code == http.StatusOK })
	procs["b"] = serve("b")
	poll.Until(t, "b to answer 503 naming a", 30*time.Second, func() bool {
		code, body, _ := leader(ports["b"])
		return code == http.StatusServiceUnavailable && body.Leader == "a" && body.Identity == "b" && !body.Leading && body.Term == 1
	})
	if code, body, _ := leader(ports["a"]); code != http.StatusOK || body != (healthz.Leader{Identity: "a", Leading: true, Leader: "a", Term: 1}) {
		t.Fatalf("a: /leader = %d %+v", code, body)
	}

	procs["a"].signal(t, syscall.SIGTERM)
	if code := procs["a"].wait(t, 30*time.Second); code != 0 {
		t.Fatalf("a exited %d after SIGTERM", code)
	}
	poll.Until(t, "b to lead in term 2", 30*time.Second, func() bool {
		code, body, _ := leader(ports["b"])
		return code == http.StatusOK && body.Leading && body.Leader == "b" && body.Term == 2
	})
	procs["a"] = serve("a")
	poll.Until(t, "a, back, to answer 503 naming b", 30*time.Second, func() bool {
		code, body, _ := leader(ports["a"])
		return code == http.StatusServiceUnavailable && body.Leader == "b" && body.Term == 2
	})
}
