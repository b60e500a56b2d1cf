package gossiptest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Plan is the partition of nodes that run in separate processes, each with
// a Network of its own: a driver writes it to a file (WritePlan), and each
// process applies it to its Network (Follow) and acknowledges it
// (Applied). The fault campaign (bench/faults --backend=gossip) partitions
// the example's processes this way, with no root and no firewall.
type Plan struct {
	// Gen numbers the plans; a process acknowledges the last it applied.
	Gen int64 `json:"gen"`
	// Addrs maps each node's name to its "127.0.0.1:port".
	Addrs map[string]string `json:"addrs"`
	// Groups partition the nodes: every link between two groups is cut,
	// both ways. No groups: every link is healthy.
	Groups [][]string `json:"groups,omitempty"`
}

// Apply gives n the links of p: every node's address registered, every
// link healthy, then the partition.
func (n *Network) Apply(p Plan) {
	for name, addr := range p.Addrs {
		n.Register(name, addr)
	}
	n.Heal()
	if len(p.Groups) > 0 {
		n.Partition(p.Groups...)
	}
}

// WritePlan replaces the plan at path atomically (a rename).
func WritePlan(path string, p Plan) error {
	b, err := json.Marshal(p)
	if err != nil {
		return err
	}
	return writeAtomic(path, b)
}

// ReadPlan reads the plan at path.
func ReadPlan(path string) (Plan, error) {
	var p Plan
	b, err := os.ReadFile(path)
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, fmt.Errorf("gossiptest: plan %s: %w", path, err)
	}
	return p, nil
}

// Follow applies the plan at path to n now, then every interval until ctx
// ends whenever its Gen changes, and after each writes the Gen it applied
// for node name (see Applied). A plan it cannot read is retried; the first
// must be readable.
func (n *Network) Follow(ctx context.Context, path, name string, interval time.Duration) error {
	p, err := ReadPlan(path)
	if err != nil {
		return err
	}
	n.Apply(p)
	if err := writeAtomic(ackPath(path, name), []byte(strconv.FormatInt(p.Gen, 10))); err != nil {
		return err
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		last := p.Gen
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			p, err := ReadPlan(path)
			if err != nil || p.Gen == last {
				continue
			}
			n.Apply(p)
			if writeAtomic(ackPath(path, name), []byte(strconv.FormatInt(p.Gen, 10))) == nil {
				last = p.Gen
			}
		}
	}()
	return nil
}

// Applied returns the Gen of the last plan at path that node name applied
// (-1 if none yet).
func Applied(path, name string) int64 {
	b, err := os.ReadFile(ackPath(path, name))
	if err != nil {
		return -1
	}
	gen, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return gen
}

func ackPath(path, name string) string { return path + "." + name + ".applied" }

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}
