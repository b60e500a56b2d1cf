package gossip

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/b3df926d/leaderelection/backend/gossip/internal/casp"
	"github.com/b3df926d/leaderelection/lock"
)

// DefaultPort is memberlist's usual port, used when Options.Bind names no
// port.
const DefaultPort = 7946

// Options configure a candidate. Name, Voters and a key (or Insecure) are
// required; the zero value of every other field is a sensible default.
type Options struct {
	// Name is the election's name. It is memberlist's Label, so two
	// elections on one network never mix their traffic, and it is in
	// every message. Required.
	Name string
	// Identity is this candidate's identity in the record and in every
	// message, unique in the cluster (at most 493 bytes). Its memberlist
	// node name is the identity and a random per-process incarnation, so
	// that a process restarted at a new address is admitted at once;
	// two live processes with one identity are logged as such. Empty means
	// lock.DefaultIdentity(): $POD_NAME (so a StatefulSet's stable pod
	// names are the voters' names), else <hostname>_<pid>, which only a
	// NonVoter can use.
	Identity string
	// Voters are the identities whose acceptors hold the record: an odd
	// number (3 or 5 typically), the same list on every candidate. A
	// quorum is a majority of them. A candidate whose Identity is not in
	// the list must set NonVoter. Changing the list is an offline
	// procedure (docs/backends/gossip.md): every message carries a hash of
	// the list and is refused where it differs.
	Voters []string
	// NonVoter makes this candidate propose without holding a copy of the
	// record; its Identity must not be in Voters.
	NonVoter bool

	// Bind is the address memberlist listens on, TCP and UDP, as
	// "host:port" (default "0.0.0.0:7946"; port 0 picks a free one).
	Bind string
	// Advertise is the "host:port" other members reach this one at
	// (default: derived from Bind as memberlist does).
	Advertise string
	// Join are seed addresses ("host:port" or DNS names, such as a
	// headless Service) joined at start and re-joined every
	// RejoinInterval, since memberlist never re-merges a partitioned
	// cluster by itself. Unreachable seeds are logged, not fatal.
	Join []string
	// RejoinInterval is how often the seeds are joined again (default:
	// the preset's).
	RejoinInterval time.Duration

	// SecretKey encrypts and authenticates every message (AES-GCM); 16,
	// 24 or 32 bytes. Never logged.
	SecretKey []byte
	// SecretKeyFile holds the key: base64 text, as produced by
	// `head -c 32 /dev/urandom | base64` (tried first), or raw bytes. Used
	// when SecretKey is empty.
	SecretKeyFile string
	// Insecure runs without encryption, which must be asked for
	// explicitly; a warning is logged.
	Insecure bool

	// StateDir, if set, is where a voter persists its promise and accepted
	// record, written and fsynced before each reply. With it, terms stay
	// strictly increasing across any sequence of restarts; without it a
	// voter restarting with no state first recovers from the others.
	StateDir string

	// ReinitializeAfter is how long a majority of the voters must have
	// been without their record (all restarted without StateDir) before
	// they start the register afresh (default DefaultReinitializeAfter).
	// It must be at least the elector's LeaseDuration plus RenewDeadline,
	// so that any earlier leader has stepped down.
	ReinitializeAfter time.Duration

	// Preset selects memberlist's timing (default PresetLAN).
	Preset Preset
	// Memberlist, if set, adjusts memberlist's configuration after the
	// preset and the options above are applied (the last word on tuning).
	Memberlist func(*memberlist.Config)
	// Transport, if set, replaces memberlist's own UDP/TCP transport (tests
	// wrap it to inject faults); Bind is then ignored.
	Transport memberlist.NodeAwareTransport

	// Logger receives structured logs (default: klog's).
	Logger *logr.Logger
	// Registerer, if set, receives this lock's metrics.
	Registerer prometheus.Registerer
}

// Preset is a named memberlist timing, after memberlist's own
// DefaultLANConfig, DefaultWANConfig and DefaultLocalConfig.
type Preset int

const (
	// PresetLAN is memberlist.DefaultLANConfig: probes every second, a
	// failed node is declared dead in about 5 s. Seeds re-joined every
	// 30 s.
	PresetLAN Preset = iota
	// PresetWAN is memberlist.DefaultWANConfig, for links with high
	// latency. Seeds re-joined every 60 s.
	PresetWAN
	// PresetLocal is memberlist.DefaultLocalConfig, for a fast, reliable
	// network. Seeds re-joined every 15 s.
	PresetLocal
	// PresetLoopback is for candidates on one host: tests, demos. Probes
	// every 200 ms, seeds re-joined every second.
	PresetLoopback
)

func (p Preset) String() string {
	switch p {
	case PresetLAN:
		return "lan"
	case PresetWAN:
		return "wan"
	case PresetLocal:
		return "local"
	case PresetLoopback:
		return "loopback"
	}
	return "Preset(" + strconv.Itoa(int(p)) + ")"
}

// ParsePreset returns the preset called s (lan, wan, local, loopback).
func ParsePreset(s string) (Preset, error) {
	for p := PresetLAN; p <= PresetLoopback; p++ {
		if p.String() == s {
			return p, nil
		}
	}
	return 0, fmt.Errorf("unknown preset %q (want lan, wan, local or loopback)", s)
}

// config returns memberlist's configuration for p and how often to
// re-join the seeds.
func (p Preset) config() (*memberlist.Config, time.Duration) {
	switch p {
	case PresetWAN:
		return memberlist.DefaultWANConfig(), time.Minute
	case PresetLocal:
		return memberlist.DefaultLocalConfig(), 15 * time.Second
	case PresetLoopback:
		c := memberlist.DefaultLocalConfig()
		c.ProbeInterval = 200 * time.Millisecond
		c.ProbeTimeout = 100 * time.Millisecond
		c.GossipInterval = 100 * time.Millisecond
		c.PushPullInterval = 5 * time.Second
		c.SuspicionMult = 3
		c.TCPTimeout = 2 * time.Second
		c.GossipToTheDeadTime = 2 * time.Second
		c.DeadNodeReclaimTime = time.Second
		return c, time.Second
	}
	return memberlist.DefaultLANConfig(), 30 * time.Second
}

// settings are validated Options with defaults applied.
type settings struct {
	Options
	key       []byte
	bindHost  string
	bindPort  int
	advHost   string
	advPort   int
	voter     bool
	voterHash string
}

// validate checks opts before anything listens or joins; every error names
// the option.
func (o Options) validate() (*settings, error) {
	s := &settings{Options: o}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("gossip: "+format, args...)) }
	if o.Name == "" {
		bad("Options.Name (the election's name) is required")
	} else if len(o.Name) > memberlist.LabelMaxSize {
		bad("Options.Name %q is longer than memberlist's %d-byte label limit", o.Name, memberlist.LabelMaxSize)
	}
	if s.Identity == "" {
		s.Identity = lock.DefaultIdentity()
	}
	if len(s.Identity) > maxIdentity {
		bad("Options.Identity is %d bytes; at most %d fit memberlist's node metadata", len(s.Identity), maxIdentity)
	}
	seen := map[string]bool{}
	for i, v := range o.Voters {
		switch {
		case strings.TrimSpace(v) == "":
			bad("Options.Voters[%d] is empty", i)
		case seen[v]:
			bad("Options.Voters lists %q twice", v)
		}
		seen[v] = true
	}
	switch n := len(o.Voters); {
	case n == 0:
		bad("Options.Voters is required: the identities that hold the record (3 or 5 typically)")
	case n%2 == 0:
		bad("Options.Voters has %d names; an even number adds no tolerance to failures and lets a clean split stop both halves: use an odd number", n)
	}
	if s.Identity != "" && len(o.Voters) > 0 {
		in := seen[s.Identity]
		s.voter = in && !o.NonVoter
		switch {
		case !in && !o.NonVoter:
			bad("Options.Identity %q is not in Options.Voters %v; set Options.NonVoter for a candidate that does not vote", s.Identity, o.Voters)
		case in && o.NonVoter:
			bad("Options.NonVoter is set but Options.Identity %q is in Options.Voters", s.Identity)
		}
	}
	switch {
	case len(o.SecretKey) > 0:
		s.key = o.SecretKey
		if err := checkKeyLen(len(s.key)); err != nil {
			bad("Options.SecretKey: %v", err)
		}
	case o.SecretKeyFile != "":
		key, err := readKeyFile(o.SecretKeyFile)
		if err != nil {
			bad("Options.SecretKeyFile: %v", err)
		}
		s.key = key
	case !o.Insecure:
		bad("Options.SecretKey or Options.SecretKeyFile is required (16, 24 or 32 bytes); set Options.Insecure to run unencrypted")
	}
	if o.Transport == nil {
		bind := o.Bind
		if bind == "" {
			bind = "0.0.0.0:" + strconv.Itoa(DefaultPort)
		}
		host, port, err := splitHostPort(bind)
		if err != nil {
			bad("Options.Bind %q: %v", o.Bind, err)
		} else if net.ParseIP(host) == nil {
			bad("Options.Bind %q: the host must be an IP address", o.Bind)
		}
		s.bindHost, s.bindPort = host, port
	}
	if o.Advertise != "" {
		host, port, err := splitHostPort(o.Advertise)
		if err != nil {
			bad("Options.Advertise %q: %v", o.Advertise, err)
		}
		s.advHost, s.advPort = host, port
	}
	for i, j := range o.Join {
		if strings.TrimSpace(j) == "" {
			bad("Options.Join[%d] is empty", i)
		}
	}
	if o.Preset < PresetLAN || o.Preset > PresetLoopback {
		bad("Options.Preset %v is not a known preset", o.Preset)
	}
	if o.ReinitializeAfter < 0 {
		bad("Options.ReinitializeAfter %v is negative", o.ReinitializeAfter)
	}
	if o.RejoinInterval < 0 {
		bad("Options.RejoinInterval %v is negative", o.RejoinInterval)
	}
	if o.StateDir != "" {
		if fi, err := os.Stat(o.StateDir); err != nil {
			bad("Options.StateDir: %v", err)
		} else if !fi.IsDir() {
			bad("Options.StateDir %q is not a directory", o.StateDir)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	s.voterHash = casp.VoterHash(o.Voters)
	return s, nil
}

func checkKeyLen(n int) error {
	switch n {
	case 16, 24, 32:
		return nil
	}
	return fmt.Errorf("key is %d bytes; AES needs 16, 24 or 32", n)
}

// readKeyFile reads a key stored raw or as base64 text.
func readKeyFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err // names the file
	}
	if text := strings.TrimSpace(string(raw)); text != "" {
		if key, err := base64.StdEncoding.DecodeString(text); err == nil && checkKeyLen(len(key)) == nil {
			return key, nil
		}
	}
	if err := checkKeyLen(len(raw)); err != nil {
		return nil, fmt.Errorf("%s: neither base64 text nor raw bytes of a valid key: %v", path, err)
	}
	return raw, nil
}

func splitHostPort(hp string) (string, int, error) {
	host, p, err := net.SplitHostPort(hp)
	if err != nil {
		// A bare host: the default port.
		if ip := net.ParseIP(hp); ip != nil {
			return hp, DefaultPort, nil
		}
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 0 || port > 65535 {
		return "", 0, fmt.Errorf("port %q is not a number from 0 to 65535", p)
	}
	return host, port, nil
}
