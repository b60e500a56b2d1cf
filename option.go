package leaderelection

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/klog/v2"

	writegate "github.com/b3df926d/leaderelection/gate"
	"github.com/b3df926d/leaderelection/lock"
)

// Defaults, as Kubernetes components use them.
const (
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
	// DefaultPort is the health server's port when Option.Port is 0.
	DefaultPort = 8080
	// NoHealthServer as Option.Port disables the health server.
	NoHealthServer = -1
)

// Option configures Run and RunOrDie. The first eight fields are those of
// caicloud's RunOrDie wrapper, so its users can switch by changing the
// import.
type Option struct {
	// LeaseLockName and LeaseLockNamespace name the Kubernetes Lease used
	// when Lock is nil.
	LeaseLockName      string
	LeaseLockNamespace string
	// ID is this candidate's identity. Empty means Lock's identity (every
	// backend defaults its own to lock.DefaultIdentity()), or, when Lock is
	// nil, lock.DefaultIdentity(): $POD_NAME, else "<hostname>_<pid>". A
	// non-empty ID that differs from Lock's identity is an error.
	ID string
	// KubeClient reaches the API server for the Lease when Lock is nil.
	KubeClient kubernetes.Interface
	// Run is the leader's work. It runs only while this process holds the
	// lock; its context carries the term (TermFrom) and is cancelled the
	// moment leadership ends. It must return promptly then.
	Run func(ctx context.Context)
	// RunE is Run for work that can fail: set one of Run and RunE. An
	// error it returns (one wrapping context.Canceled aside) ends the
	// election: the lock is released if ReleaseOnCancel is set, Run returns
	// the error wrapped in ErrRunFailed, and RunOrDie exits 1.
	RunE func(ctx context.Context) error
	// Standby, if set, is the work every candidate does whether or not it
	// leads (a warm standby: informers, caches, connections), so that the
	// leader's function starts warm. It starts with Run, before the
	// campaign, and calls ready once warm: the candidate campaigns only
	// after that (with Disabled: the function starts only then), and
	// /readyz's "standby" check fails until then. Its
	// context ends only after the election has (the leader's function
	// returned, the lock released), so a lost term, with Recampaign, does
	// not end it. It may return at once, leaving goroutines on its
	// context; Run waits for it to return, up to StopTimeout, after ending
	// its context. Returning without calling ready ends Run with an error.
	Standby func(ctx context.Context, ready func())
	// LivenessChecker, if set, is served as the "liveness" check on
	// /healthz and /livez, on every replica.
	LivenessChecker func(req *http.Request) error
	// ReadinessChecker, if set, is served as the "readiness" check on
	// /readyz only, on every replica.
	ReadinessChecker func(req *http.Request) error
	// LeaderOnlyReady makes /readyz fail on every replica but the leader,
	// so a Kubernetes Service routes only to the leader (active/passive);
	// see example/deploy/active-passive.yaml. /livez is unaffected.
	LeaderOnlyReady bool
	// Handlers are the application's own handlers, mounted on the health
	// server by pattern (for example "/work"): no second HTTP server.
	Handlers map[string]http.Handler
	// Leadership, if set, is kept up to date with this process's election
	// state, for the application's handlers and goroutines to read.
	Leadership *Leadership
	// Port is the health server's port: 0 means DefaultPort, NoHealthServer
	// disables it.
	Port int
	// StopCh, when closed, stops the process gracefully (as cancelling
	// Run's context does).
	StopCh <-chan struct{}

	// Lock is the backend's lock. Nil means a Lease through KubeClient.
	Lock lock.Interface
	// ResourceLock is the lock type when Lock is nil; only "leases" is
	// supported (as in Kubernetes today).
	ResourceLock string
	// Disabled runs Run at once, without an election (--leader-elect=false).
	Disabled bool

	// LeaseDuration, RenewDeadline and RetryPeriod: see Config. Zero means
	// the Kubernetes defaults 15s, 10s and 2s; negative is an error.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
	// ReleaseOnCancel releases the lock after a graceful stop, so another
	// replica takes over at once.
	ReleaseOnCancel bool
	// StopTimeout and TermLimit: see Config.
	StopTimeout time.Duration
	TermLimit   time.Duration
	// Recampaign makes a process that lost its lease (its function having
	// returned within StopTimeout) campaign again instead of exiting: see
	// Config.Recampaign.
	Recampaign bool
	// Recover keeps the leader's function running through a store outage,
	// its Gate closed, and leads again in the same term if nobody took
	// over; RecoverDeadline bounds it. See Config.Recover. Requires Gate.
	Recover         bool
	RecoverDeadline time.Duration

	// Gate, if set, is opened by the elector with the term when this
	// process starts leading and closed at its step-down: see Config.Gate.
	// Build the clients the leader writes with from it (Gate.Config for
	// client-go, Gate.Do for any other), and start informers on them in
	// Standby: reads always pass.
	Gate *writegate.Gate

	// OnNewLeader and OnStoppedLeading: see Callbacks.
	OnNewLeader      func(identity string)
	OnStoppedLeading func()

	// HealthBindAddress is the health server's host (default: all
	// interfaces).
	HealthBindAddress string
	// Name labels logs and metrics (default: the lock's Describe()).
	Name string
	// Logger receives structured logs (default: klog's).
	Logger *klog.Logger
}

// withDefaults fills in zero fields. An empty ID is the Lock's identity, or
// else lock.DefaultIdentity().
func (o Option) withDefaults() Option {
	if o.ID == "" && o.Lock != nil {
		o.ID = o.Lock.Identity()
	}
	if o.ID == "" && o.Lock == nil {
		o.ID = lock.DefaultIdentity()
	}
	if o.LeaseDuration == 0 {
		o.LeaseDuration = DefaultLeaseDuration
	}
	if o.RenewDeadline == 0 {
		o.RenewDeadline = DefaultRenewDeadline
	}
	if o.RetryPeriod == 0 {
		o.RetryPeriod = DefaultRetryPeriod
	}
	if o.Port == 0 {
		o.Port = DefaultPort
	}
	if o.ResourceLock == "" {
		o.ResourceLock = resourcelock.LeasesResourceLock
	}
	return o
}

// Validate reports, in one error, every field that is wrong, after applying
// the defaults.
func (o Option) Validate() error {
	_, _, err := o.resolve()
	return err
}

// resolve applies o's defaults and checks it, once, for Run and Validate:
// it returns o with its defaults, the elector's Config made from it (its
// Lock nil if o's is: Run makes the Lease), and every problem, each naming
// the field and the flag AddFlags binds to it. The durations and the rest
// of Config's fields are checked by Config's own rules, then by the lock's
// store's (lock.DurationRules; a Lease's when Lock is nil).
func (o Option) resolve() (Option, Config, error) {
	o = o.withDefaults()
	c := Config{
		Lock:            o.Lock,
		LeaseDuration:   o.LeaseDuration,
		RenewDeadline:   o.RenewDeadline,
		RetryPeriod:     o.RetryPeriod,
		ReleaseOnCancel: o.ReleaseOnCancel,
		StopTimeout:     o.StopTimeout,
		TermLimit:       o.TermLimit,
		Recampaign:      o.Recampaign,
		Recover:         o.Recover,
		RecoverDeadline: o.RecoverDeadline,
		Gate:            o.Gate,
		Name:            o.Name,
		Logger:          o.Logger,
		Callbacks: Callbacks{
			OnStartedLeading: o.Run,
			OnStoppedLeading: o.OnStoppedLeading,
			OnNewLeader:      o.OnNewLeader,
		},
	}
	var errs []error
	if o.Run == nil && o.RunE == nil {
		errs = append(errs, errors.New("Run must not be nil"))
	} else if o.Run != nil && o.RunE != nil {
		errs = append(errs, errors.New("Run and RunE are both set: set one"))
	}
	if o.Port < NoHealthServer || o.Port > 65535 {
		errs = append(errs, fmt.Errorf("Option.Port %d is out of range: want 1-65535, 0 for %d, or %d to disable the health server", o.Port, DefaultPort, NoHealthServer))
	}
	if o.Disabled {
		return o, c, errors.Join(errs...)
	}
	if o.ID == "" {
		errs = append(errs, errors.New("ID is empty and so is Lock's identity: each candidate needs a unique identity"))
	}
	if o.Lock == nil {
		if o.KubeClient == nil {
			errs = append(errs, errors.New("Option.Lock and Option.KubeClient are both nil: set Lock to a backend's lock, or KubeClient for a Kubernetes Lease"))
		}
		if o.ResourceLock != resourcelock.LeasesResourceLock {
			errs = append(errs, fmt.Errorf("ResourceLock %q is not supported: use %q, or set Lock", o.ResourceLock, resourcelock.LeasesResourceLock))
		}
		if o.LeaseLockName == "" {
			errs = append(errs, errors.New("LeaseLockName must not be empty when Lock is nil"))
		}
		if o.LeaseLockNamespace == "" {
			errs = append(errs, errors.New("LeaseLockNamespace must not be empty when Lock is nil"))
		}
	} else if o.ID != "" && o.Lock.Identity() != o.ID {
		errs = append(errs, fmt.Errorf("ID %q differs from the identity %q of Lock %s: leave ID empty to use the lock's identity, or give the lock's Options.Identity the same value", o.ID, o.Lock.Identity(), o.Lock.Describe()))
	}
	errs = append(errs, c.check(optionNames, durationRules(o.Lock))...)
	return o, c, errors.Join(errs...)
}

// The flags AddFlags binds to the fields Config's rules check.
const (
	flagLeaseDuration   = "leader-elect-lease-duration"
	flagRenewDeadline   = "leader-elect-renew-deadline"
	flagRetryPeriod     = "leader-elect-retry-period"
	flagStopTimeout     = "leader-elect-stop-timeout"
	flagTermLimit       = "leader-elect-term-limit"
	flagRecover         = "leader-elect-recover"
	flagRecoverDeadline = "leader-elect-recover-deadline"
)

// optionNames names a field in Option's errors with its flag.
var optionNames = names{
	owner: "Option",
	flags: map[string]string{
		"LeaseDuration": flagLeaseDuration, "RenewDeadline": flagRenewDeadline, "RetryPeriod": flagRetryPeriod,
		"StopTimeout": flagStopTimeout, "TermLimit": flagTermLimit,
		"Recover": flagRecover, "RecoverDeadline": flagRecoverDeadline,
	},
	zeroNote: " (0 means the default)",
}

// AddFlags binds Kubernetes' leader-election flag names to o:
//
//	--leader-elect                      (default true; false runs without election)
//	--leader-elect-lease-duration       (default 15s)
//	--leader-elect-renew-deadline       (default 10s)
//	--leader-elect-retry-period         (default 2s)
//	--leader-elect-resource-lock        (default "leases")
//	--leader-elect-resource-name
//	--leader-elect-resource-namespace
//
// and this library's own:
//
//	--leader-elect-release-on-cancel
//	--leader-elect-stop-timeout         (0: the lease duration)
//	--leader-elect-term-limit           (0: none)
//	--leader-elect-recampaign
//	--leader-elect-recover              (needs Option.Gate)
//	--leader-elect-recover-deadline     (0: 4 × the lease duration)
//	--health-bind-address               (empty: all interfaces)
//
// Every flag's default is the value already in o (after filling in the
// zero durations and lock type), so flags only override what the program
// set; the defaults shown above are those of a zero Option.
func (o *Option) AddFlags(fs *pflag.FlagSet) {
	d := o.withDefaults()
	o.LeaseDuration, o.RenewDeadline, o.RetryPeriod, o.ResourceLock = d.LeaseDuration, d.RenewDeadline, d.RetryPeriod, d.ResourceLock
	fs.Var((*invertedBool)(&o.Disabled), "leader-elect", "Start a leader election client and gain leadership before executing the main loop. Enable this when running replicated components for high availability.")
	fs.Lookup("leader-elect").NoOptDefVal = "true"
	fs.Var((*positiveDuration)(&o.LeaseDuration), flagLeaseDuration, "The duration that non-leader candidates will wait after observing a leadership renewal until attempting to acquire leadership of a led but unrenewed leader slot. This is effectively the maximum duration that a leader can be stopped before it is replaced by another candidate.")
	fs.Var((*positiveDuration)(&o.RenewDeadline), flagRenewDeadline, "The interval between attempts by the acting master to renew a leadership slot before it stops leading. This must be less than the lease duration.")
	fs.Var((*positiveDuration)(&o.RetryPeriod), flagRetryPeriod, "The duration the clients should wait between attempting acquisition and renewal of a leadership (at least 1s).")
	fs.StringVar(&o.ResourceLock, "leader-elect-resource-lock", o.ResourceLock, "The type of resource object that is used for locking during leader election. Supported options are 'leases'.")
	fs.StringVar(&o.LeaseLockName, "leader-elect-resource-name", o.LeaseLockName, "The name of resource object that is used for locking during leader election.")
	fs.StringVar(&o.LeaseLockNamespace, "leader-elect-resource-namespace", o.LeaseLockNamespace, "The namespace of resource object that is used for locking during leader election.")
	fs.BoolVar(&o.ReleaseOnCancel, "leader-elect-release-on-cancel", o.ReleaseOnCancel, "Release the lock on a graceful stop, after the leader's work has returned, so another replica takes over at once.")
	fs.DurationVar(&o.StopTimeout, flagStopTimeout, o.StopTimeout, "How long to wait for the leader's work to return after leadership ends (0: the lease duration).")
	fs.DurationVar(&o.TermLimit, flagTermLimit, o.TermLimit, "Hand leadership over after leading this long (0: never).")
	fs.BoolVar(&o.Recampaign, "leader-elect-recampaign", o.Recampaign, "After losing the lease, campaign again in the same process (if the leader's work returned within the stop timeout) instead of exiting.")
	fs.BoolVar(&o.Recover, flagRecover, o.Recover, "When renewals fail past the renew deadline, stop leading (the write gate closes) but keep the leader's work running, and lead again in the same term if the lock is renewed before anyone else takes it (the program must set a write gate).")
	fs.DurationVar(&o.RecoverDeadline, flagRecoverDeadline, o.RecoverDeadline, "With --leader-elect-recover, how long after the last good renewal to keep trying before giving up as after a lost lease (0: 4 × the lease duration; more than the renew deadline).")
	fs.StringVar(&o.HealthBindAddress, "health-bind-address", o.HealthBindAddress, "The address the health server binds (default: all interfaces).")
	fs.IntVar(&o.Port, "health-port", o.Port, "The health server's port (0: 8080; -1: no health server). Copies on one host need one each.")
}

// invertedBool is a pflag.Value that stores the negation of the flag.
type invertedBool bool

func (b *invertedBool) String() string { return strconv.FormatBool(!bool(*b)) }
func (b *invertedBool) Type() string   { return "bool" }
func (b *invertedBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*b = invertedBool(!v)
	return nil
}

// positiveDuration is a pflag.Value that rejects zero and negative
// durations, which would otherwise silently mean "default".
type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }
func (d *positiveDuration) Type() string   { return "duration" }
func (d *positiveDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v <= 0 {
		return fmt.Errorf("must be positive, got %v", v)
	}
	*d = positiveDuration(v)
	return nil
}
