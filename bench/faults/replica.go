package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// replica is one incarnation of an example process.
type replica struct {
	id   string
	port int
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed once it has exited and state is set
	// state is the exit status; read only after done.
	state *os.ProcessState
	// sent is the signal the campaign sent to end it (0: none).
	sent atomic.Int32
	// paused is true between SIGSTOP and SIGCONT.
	paused atomic.Bool
}

func (c *campaign) startReplica(slot int) (*replica, error) {
	id := replicaID(slot)
	port := freePort(c.tb)
	logPath := filepath.Join(c.dir, id+".log")
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	args := append([]string{
		"--id=" + id, "--port=" + strconv.Itoa(port), "--health-bind-address=127.0.0.1",
		"--fence-file=" + c.sinkPath, "--work-interval=" + c.cfg.WorkInterval.String(),
		"--leader-elect-lease-duration=" + c.cfg.LeaseDuration.String(),
		"--leader-elect-renew-deadline=" + c.cfg.RenewDeadline.String(),
		"--leader-elect-retry-period=" + c.cfg.RetryPeriod.String(),
	}, c.store.args()...)
	if c.cfg.Recover {
		args = append(args, "--leader-elect-recover")
	}
	if c.cfg.Shards > 0 {
		// Each shard writes through the sink at c.sinkPath.<shard>.
		args = append(args, "--shards="+strconv.Itoa(c.cfg.Shards))
	}
	if pr, ok := c.store.(perReplica); ok {
		args = append(args, pr.replicaArgs(slot)...)
	}
	cmd := exec.Command(c.bin, args...)
	cmd.Env = append(os.Environ(), c.store.env()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// Killed with the campaign, should it die first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// A marker in the log between incarnations of one identity.
	fmt.Fprintf(logf, "=== campaign: starting %s on port %d\n", id, port)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("starting %s: %w", id, err)
	}
	logf.Close()
	r := &replica{id: id, port: port, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		r.state = cmd.ProcessState
		close(r.done)
	}()
	return r, nil
}

// replicaID is the identity of the replicas in slot.
func replicaID(slot int) string { return fmt.Sprintf("r%d", slot) }

// perReplica is a store whose replicas each need flags of their own
// (gossip: a bind address, a state directory), kept across restarts.
type perReplica interface {
	replicaArgs(slot int) []string
}

func (r *replica) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *replica) signal(sig syscall.Signal) {
	if sig == syscall.SIGKILL || sig == syscall.SIGTERM {
		r.sent.Store(int32(sig))
	}
	r.cmd.Process.Signal(sig)
}

// stop kills the replica and waits for it.
func (r *replica) stop() {
	r.signal(syscall.SIGKILL)
	r.cmd.Process.Signal(syscall.SIGCONT)
	<-r.done
}

// ledThisIncarnation reports whether the replica's log shows it led since
// it was last started: only a leader may exit on its own (a lost lease).
func (r *replica) ledThisIncarnation() bool {
	b, err := os.ReadFile(r.log)
	if err != nil {
		return false
	}
	if i := bytes.LastIndex(b, []byte("=== campaign: starting")); i >= 0 {
		b = b[i:]
	}
	return bytes.Contains(b, []byte(`"Started leading"`))
}

// exitProblem describes an unexpected exit, or returns "".
func (r *replica) exitProblem() string {
	sent := syscall.Signal(r.sent.Load())
	ws, _ := r.state.Sys().(syscall.WaitStatus)
	switch {
	case sent == syscall.SIGKILL && ws.Signaled() && ws.Signal() == syscall.SIGKILL:
		return ""
	case sent == syscall.SIGTERM && ws.Exited() && ws.ExitStatus() == 0:
		return ""
	case ws.Exited() && ws.ExitStatus() == 1 && r.ledThisIncarnation():
		return "" // RunOrDie's exit after a lost lease (perhaps just before a signal)
	}
	return fmt.Sprintf("%s exited with %v (campaign sent %v; led: %v; log %s); its last lines:\n%s", r.id, r.state, sent, r.ledThisIncarnation(), r.log, r.logTail(8))
}

// logTail returns the last n lines of the replica's log (its test's
// temporary directory is gone once a failed test has reported).
func (r *replica) logTail(n int) string {
	b, err := os.ReadFile(r.log)
	if err != nil {
		return "  (log unreadable: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	lines = lines[max(0, len(lines)-n):]
	return "  " + strings.Join(lines, "\n  ")
}

// status is the part of /status the campaign reads.
type status struct {
	Leading bool   `json:"leading"`
	Leader  string `json:"leader"`
	Term    int64  `json:"term"`
	// Shards is the sharded mode's part (nil for one leadership).
	Shards *struct {
		Slot  int `json:"slot"`
		Owned []struct {
			Shard int   `json:"shard"`
			Term  int64 `json:"term"`
		} `json:"owned"`
	} `json:"shards"`
}

var httpClient = &http.Client{Timeout: 250 * time.Millisecond, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}

func (r *replica) status(ctx context.Context) (status, bool) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:"+strconv.Itoa(r.port)+"/status", nil)
	if err != nil {
		return status{}, false
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return status{}, false
	}
	defer resp.Body.Close()
	var s status
	return s, resp.StatusCode == http.StatusOK && json.NewDecoder(resp.Body).Decode(&s) == nil
}

// livez returns nil if /livez answers 200.
func (r *replica) livez() error { return r.get200("/livez") }

// gossipReady returns nil if the gossip lock's readiness check passes: a
// voter that has its record (lock.ReadinessChecker, /readyz/gossip).
func (r *replica) gossipReady() error { return r.get200("/readyz/gossip") }

func (r *replica) get200(path string) error {
	resp, err := httpClient.Get("http://127.0.0.1:" + strconv.Itoa(r.port) + path)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 500))
		return fmt.Errorf("%s: %s: %s", path, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}
