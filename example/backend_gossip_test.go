package main

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A voter that starts without its record is not ready until it has
// recovered it from a quorum of the others, so that a rolling restart
// (example/deploy/gossip-statefulset.yaml's readinessProbe) waits for it:
// /readyz fails, saying so, while it is alone, and passes once the other
// voters are up.
func TestGossipVoterIsNotReadyUntilItHasItsRecord(t *testing.T) {
	bin := buildExample(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "gossip.key")
	if err := os.WriteFile(key, []byte("dGVzdCBrZXksIG5vdCBhIHNlY3JldCwgMzIgYnl0ZXM="), 0o600); err != nil {
		t.Fatal(err)
	}
	ids := []string{"a", "b", "c"}
	var join []string
	binds := map[string]string{}
	for _, id := range ids {
		binds[id] = "127.0.0.1:" + strconv.Itoa(freePort(t))
		join = append(join, binds[id])
		if err := os.Mkdir(filepath.Join(dir, id+"-state"), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	start := func(id string) *proc {
		return startProc(t, bin, dir, id, freePort(t), "--backend=gossip", "--gossip-voters=a,b,c",
			"--gossip-join="+strings.Join(join, ","), "--gossip-bind="+binds[id], "--gossip-key-file="+key,
			"--gossip-preset=loopback", "--gossip-state-dir="+filepath.Join(dir, id+"-state"))
	}
	readiness := func(p *proc) (int, string) {
		resp, err := statusClient.Get("http://127.0.0.1:" + strconv.Itoa(p.port) + "/readyz/readiness")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	a := start("a")
	var code int
	var body string
	waitUntil(t, "a's health server to answer", 30*time.Second, func() bool {
		code, body = readiness(a)
		return code != 0
	})
	if code != http.StatusInternalServerError || !strings.Contains(body, "recovering its record") {
		t.Fatalf("a alone: /readyz/readiness %d %q, want 500 saying it is recovering its record", code, body)
	}
	procs := []*proc{a, start("b"), start("c")}
	for _, p := range procs {
		waitUntil(t, p.id+" to be ready", 60*time.Second, func() bool {
			code, body = readiness(p)
			return code == http.StatusOK
		})
	}
}
