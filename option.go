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

	"github.com/b3df926d/leaderelection/backend/k8s"
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
	o = o.withDefaults()
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
		return errors.Join(errs...)
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
	// The elector's own rules, on the durations: first as the user set
	// them (naming the flags and the fix), then the rest of Config's.
	if derrs := append(o.durationErrors(), o.recoverErrors()...); len(derrs) > 0 {
		return errors.Join(append(errs, derrs...)...)
	}
	c := o.electorConfig(placeholderLock{id: "placeholder"})
	c.Callbacks.OnStartedLeading = func(context.Context) {} // Run was checked above
	if err := c.Validate(); err != nil {
		errs = append(errs, err)
	} else if isLease(o.Lock) {
		// A Lease stores whole seconds, which client-go truncates.
		if err := k8s.ValidateDurations(o.LeaseDuration, o.RenewDeadline); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// durationErrors checks Config's rules on the three durations (defaults
// applied), each error naming the field and its AddFlags flag and saying
// what to change. The rules are client-go's, except that RetryPeriod must be
// at least 1s.
func (o Option) durationErrors() []error {
	const (
		leaseFlag = "--leader-elect-lease-duration"
		renewFlag = "--leader-elect-renew-deadline"
		retryFlag = "--leader-elect-retry-period"
	)
	var errs []error
	for _, d := range []struct {
		field, flag string
		v           time.Duration
	}{{"LeaseDuration", leaseFlag, o.LeaseDuration}, {"RenewDeadline", renewFlag, o.RenewDeadline}, {"RetryPeriod", retryFlag, o.RetryPeriod}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%s (%v, %s) must be positive (0 means the default)", d.field, d.v, d.flag))
		}
	}
	if len(errs) > 0 {
		return errs
	}
	l, r, p := o.LeaseDuration, o.RenewDeadline, o.RetryPeriod
	if l <= r {
		errs = append(errs, fmt.Errorf("LeaseDuration (%v, %s) must be greater than RenewDeadline (%v, %s): lower the renew deadline below %v (and the retry period below it ÷ %v), or raise the lease duration above %v",
			l, leaseFlag, r, renewFlag, l, JitterFactor, r))
	} else if float64(r) <= JitterFactor*float64(p) {
		errs = append(errs, fmt.Errorf("RenewDeadline (%v, %s) must be greater than RetryPeriod×%v (%v, %s ×%v): lower the retry period below %v, or raise the renew deadline above %v (keeping it below the lease duration %v)",
			r, renewFlag, JitterFactor, time.Duration(JitterFactor*float64(p)), retryFlag, JitterFactor, time.Duration(float64(r)/JitterFactor).Round(time.Millisecond), time.Duration(JitterFactor*float64(p)), l))
	}
	if l < time.Second {
		errs = append(errs, fmt.Errorf("LeaseDuration (%v, %s) must be at least 1s: the record stores whole seconds", l, leaseFlag))
	}
	if p < time.Second {
		errs = append(errs, fmt.Errorf("RetryPeriod (%v, %s) must be at least 1s (client-go allows less; here the record's whole-second renew times need it): raise it to 1s or more", p, retryFlag))
	}
	return errs
}

// recoverErrors checks Recover and RecoverDeadline (defaults applied),
// naming the flags, as Config.Validate would without them.
func (o Option) recoverErrors() []error {
	const (
		recoverFlag  = "--leader-elect-recover"
		deadlineFlag = "--leader-elect-recover-deadline"
	)
	var errs []error
	switch {
	case o.RecoverDeadline < 0:
		errs = append(errs, fmt.Errorf("RecoverDeadline (%v, %s) must not be negative (0 means %d × the lease duration)", o.RecoverDeadline, deadlineFlag, DefaultRecoverDeadlineLeases))
	case !o.Recover && o.RecoverDeadline != 0:
		errs = append(errs, fmt.Errorf("RecoverDeadline (%v, %s) is set but Recover (%s) is not: set both, or neither", o.RecoverDeadline, deadlineFlag, recoverFlag))
	case o.Recover && o.RecoverDeadline != 0 && o.RecoverDeadline <= o.RenewDeadline:
		errs = append(errs, fmt.Errorf("RecoverDeadline (%v, %s) must be greater than RenewDeadline (%v, --leader-elect-renew-deadline): recovery begins when the renew deadline passes; raise it, or leave it 0 for %d × the lease duration",
			o.RecoverDeadline, deadlineFlag, o.RenewDeadline, DefaultRecoverDeadlineLeases))
	}
	if o.Recover && o.Gate == nil {
		errs = append(errs, fmt.Errorf("Option.Recover (%s) needs Option.Gate: while recovering, the leader's function runs without leading, and only the gate keeps its writes out; build the leader's clients from a gate.New() and set Gate", recoverFlag))
	}
	return errs
}

func (o Option) electorConfig(l lock.Interface) Config {
	return Config{
		Lock:            l,
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
}

// placeholderLock lets Validate check durations before a lock exists.
type placeholderLock struct {
	lock.Interface
	id string
}

func (p placeholderLock) Identity() string { return p.id }

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
	fs.Var((*positiveDuration)(&o.LeaseDuration), "leader-elect-lease-duration", "The duration that non-leader candidates will wait after observing a leadership renewal until attempting to acquire leadership of a led but unrenewed leader slot. This is effectively the maximum duration that a leader can be stopped before it is replaced by another candidate.")
	fs.Var((*positiveDuration)(&o.RenewDeadline), "leader-elect-renew-deadline", "The interval between attempts by the acting master to renew a leadership slot before it stops leading. This must be less than the lease duration.")
	fs.Var((*positiveDuration)(&o.RetryPeriod), "leader-elect-retry-period", "The duration the clients should wait between attempting acquisition and renewal of a leadership (at least 1s).")
	fs.StringVar(&o.ResourceLock, "leader-elect-resource-lock", o.ResourceLock, "The type of resource object that is used for locking during leader election. Supported options are 'leases'.")
	fs.StringVar(&o.LeaseLockName, "leader-elect-resource-name", o.LeaseLockName, "The name of resource object that is used for locking during leader election.")
	fs.StringVar(&o.LeaseLockNamespace, "leader-elect-resource-namespace", o.LeaseLockNamespace, "The namespace of resource object that is used for locking during leader election.")
	fs.BoolVar(&o.ReleaseOnCancel, "leader-elect-release-on-cancel", o.ReleaseOnCancel, "Release the lock on a graceful stop, after the leader's work has returned, so another replica takes over at once.")
	fs.DurationVar(&o.StopTimeout, "leader-elect-stop-timeout", o.StopTimeout, "How long to wait for the leader's work to return after leadership ends (0: the lease duration).")
	fs.DurationVar(&o.TermLimit, "leader-elect-term-limit", o.TermLimit, "Hand leadership over after leading this long (0: never).")
	fs.BoolVar(&o.Recampaign, "leader-elect-recampaign", o.Recampaign, "After losing the lease, campaign again in the same process (if the leader's work returned within the stop timeout) instead of exiting.")
	fs.BoolVar(&o.Recover, "leader-elect-recover", o.Recover, "When renewals fail past the renew deadline, stop leading (the write gate closes) but keep the leader's work running, and lead again in the same term if the lock is renewed before anyone else takes it (the program must set a write gate).")
	fs.DurationVar(&o.RecoverDeadline, "leader-elect-recover-deadline", o.RecoverDeadline, "With --leader-elect-recover, how long after the last good renewal to keep trying before giving up as after a lost lease (0: 4 × the lease duration; more than the renew deadline).")
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
