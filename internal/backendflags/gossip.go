package backendflags

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"

	"github.com/hashicorp/memberlist"
	"github.com/spf13/pflag"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/gossip"
	"github.com/b3df926d/leaderelection/lock"
)

// GossipKeyEnv holds a base64 key for --backend=gossip when
// --gossip-key-file is not given.
const GossipKeyEnv = "LEADERELECTION_GOSSIP_KEY"

// gossipBackend: --backend=gossip, no store at all: the candidates keep
// the record among the voters (memberlist and a CASPaxos register).
func gossipBackend(prog string) *backend {
	var (
		o        gossip.Options
		preset   string
		nonVoter bool
		faults   faultHook
	)
	if newFaultHook != nil {
		faults = newFaultHook()
	}
	return &backend{
		addFlags: func(fs *pflag.FlagSet) {
			if faults != nil {
				faults.addFlags(fs)
			}
			fs.StringVar(&o.Name, "gossip-name", prog, "--backend=gossip: the election's name (memberlist's label; every candidate the same).")
			fs.StringVar(&o.Bind, "gossip-bind", "0.0.0.0:7946", "--backend=gossip: host:port memberlist listens on (TCP and UDP).")
			fs.StringVar(&o.Advertise, "gossip-advertise", "", "--backend=gossip: host:port the others reach this candidate at (default: from --gossip-bind).")
			fs.StringSliceVar(&o.Join, "gossip-join", nil, "--backend=gossip: seed addresses (host:port or a DNS name such as a headless Service), joined at start and re-joined periodically.")
			fs.StringSliceVar(&o.Voters, "gossip-voters", nil, "--backend=gossip: the voters' names (an odd number, the same list everywhere); this candidate votes if its --id is among them.")
			fs.BoolVar(&nonVoter, "gossip-non-voter", false, "--backend=gossip: propose without voting (--id must not be in --gossip-voters).")
			fs.StringVar(&o.SecretKeyFile, "gossip-key-file", "", "--backend=gossip: file with the 16, 24 or 32-byte key (base64 text or raw); default: base64 in $"+GossipKeyEnv+".")
			fs.BoolVar(&o.Insecure, "gossip-insecure", false, "--backend=gossip: run unencrypted (anyone who reaches the port can vote).")
			fs.StringVar(&o.StateDir, "gossip-state-dir", "", "--backend=gossip: directory where a voter persists its promise and record (fsync before each reply); keeps terms across full restarts.")
			fs.StringVar(&preset, "gossip-preset", "lan", "--backend=gossip: memberlist timing: lan, wan, local or loopback.")
			fs.DurationVar(&o.ReinitializeAfter, "gossip-reinitialize-after", gossip.DefaultReinitializeAfter, "--backend=gossip: how long a majority of the voters must have been without their record (all started without --gossip-state-dir) before they start it afresh; at least the lease duration plus the renew deadline.")
		},
		newLock: func(ctx context.Context, id string, _ *leaderelection.Option, suffix string) (lock.Interface, error) {
			if suffix != "" {
				return nil, errors.New("the gossip backend keeps one record per election, so it has no companion record")
			}
			p, err := gossip.ParsePreset(preset)
			if err != nil {
				return nil, fmt.Errorf("--gossip-preset: %w", err)
			}
			o.Preset, o.Identity, o.NonVoter = p, id, nonVoter
			if o.SecretKeyFile == "" && !o.Insecure {
				if env := os.Getenv(GossipKeyEnv); env != "" {
					key, err := base64.StdEncoding.DecodeString(env)
					if err != nil {
						return nil, fmt.Errorf("$%s: not base64: %w", GossipKeyEnv, err)
					}
					o.SecretKey = key
				}
			}
			if faults != nil {
				t, err := faults.transport(ctx, id, o.Bind)
				if err != nil {
					return nil, err
				}
				if t != nil {
					o.Transport = t
				}
			}
			l, err := gossip.New(ctx, o)
			if err != nil {
				if o.Transport != nil {
					_ = o.Transport.Shutdown()
				}
				return nil, fmt.Errorf("%w (flags: --gossip-voters, --gossip-key-file or $%s, --gossip-bind, --gossip-state-dir)", err, GossipKeyEnv)
			}
			return l, nil
		},
	}
}

// faultHook lets the fault campaign cut the network between the example's
// processes. newFaultHook is nil, and no build has the hook, except one
// with the lefaultinject tag (gossip_faultinject.go).
type faultHook interface {
	addFlags(fs *pflag.FlagSet)
	// transport returns memberlist's transport for candidate id bound to
	// bind, or nil for the default one.
	transport(ctx context.Context, id, bind string) (memberlist.NodeAwareTransport, error)
}

var newFaultHook func() faultHook
