//go:build lefaultinject

package backendflags

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/spf13/pflag"

	"github.com/b3df926d/leaderelection/backend/gossip/gossiptest"
)

// This file is built only with -tags lefaultinject: the example that the
// fault campaign runs (bench/faults --backend=gossip). It adds
// --gossip-fault-file, which puts memberlist's transport on a
// gossiptest.Network that follows the partitions the campaign writes to
// that file, so that processes on 127.0.0.1 can be partitioned with no
// root and no firewall. A default build has neither the flag nor
// gossiptest (TestDefaultBuildHasNoGossipFaultHook in bench/faults).

func init() { newFaultHook = func() faultHook { return &faultFile{} } }

// planInterval is how often a candidate reads the fault file.
const planInterval = 20 * time.Millisecond

type faultFile struct{ path string }

func (f *faultFile) addFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.path, "gossip-fault-file", "", "--backend=gossip, fault-injection builds only: follow the partitions in this gossiptest.Plan file (--gossip-bind must be 127.0.0.1:port).")
}

func (f *faultFile) transport(ctx context.Context, id, bind string) (memberlist.NodeAwareTransport, error) {
	if f.path == "" {
		return nil, nil
	}
	host, p, err := net.SplitHostPort(bind)
	port, perr := strconv.Atoi(p)
	if err != nil || perr != nil || host != "127.0.0.1" {
		return nil, fmt.Errorf("--gossip-fault-file wants --gossip-bind=127.0.0.1:port, not %q", bind)
	}
	n := gossiptest.NewNetwork(uint64(time.Now().UnixNano()))
	t, err := n.TransportAt(id, port)
	if err != nil {
		return nil, fmt.Errorf("--gossip-bind=%s: %w", bind, err)
	}
	if err := n.Follow(ctx, f.path, id, planInterval); err != nil {
		_ = t.Shutdown()
		return nil, fmt.Errorf("--gossip-fault-file: %w", err)
	}
	return t, nil
}
