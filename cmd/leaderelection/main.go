// Command leaderelection runs any program under a leader-election lock,
// serves "am I leader" over HTTP to programs that cannot link the library,
// and inspects a lock. Every backend of the library is available by flags
// (--backend=file|k8s|s3|git|gossip and each backend's own flags), with
// Kubernetes' --leader-elect-* timing flags.
//
//	leaderelection run [flags] -- CMD [ARGS...]   run CMD while leading
//	leaderelection serve [flags]                  campaign and serve /leader
//	leaderelection status [flags]                 print the lock's record
//
// See docs/cli.md.
package main

import (
	"context"
	"errors"
	goflag "flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/backend/k8s"
	"github.com/b3df926d/leaderelection/internal/backendflags"
	"github.com/b3df926d/leaderelection/internal/logformat"
	"github.com/b3df926d/leaderelection/internal/version"
	"github.com/b3df926d/leaderelection/lock"
)

// Exit statuses of leaderelection itself (run passes its child's through).
const (
	exitOK       = 0
	exitError    = 1   // a store error, a lost lease, a child that would not die
	exitUsage    = 2   // bad flags or arguments, or a lock they cannot build
	exitFree     = 3   // status: the lock is free or its lease looks expired
	exitCorrupt  = 65  // run: the lock's record is corrupt (sysexits' EX_DATAERR)
	exitTimeout  = 75  // run --wait: not acquired in time (sysexits' EX_TEMPFAIL)
	exitNotFound = 127 // run: CMD not found or not executable, as a shell says
)

const usage = `leaderelection runs a program on exactly one of N machines.

Usage:
  leaderelection run [flags] -- CMD [ARGS...]   campaign; run CMD while leading
  leaderelection serve [flags]                  campaign; serve /leader (200 leader, 503 follower)
  leaderelection status [flags]                 print the lock's holder, term and times

"leaderelection COMMAND --help" lists a command's flags. See docs/cli.md.
`

func main() {
	os.Exit(realMain(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries the status leaderelection exits with.
type exitErr struct {
	code int
	err  error
}

func (e *exitErr) Error() string { return e.err.Error() }
func (e *exitErr) Unwrap() error { return e.err }

func usageErr(format string, args ...any) error {
	return &exitErr{code: exitUsage, err: fmt.Errorf(format, args...)}
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var (
		code int
		err  error
	)
	switch args[0] {
	case "run":
		code, err = runCommand(ctx, args[1:], stdout, stderr)
	case "serve":
		code, err = serveCommand(ctx, args[1:], stdout, stderr)
	case "status":
		code, err = statusCommand(ctx, args[1:], stdout, stderr)
	case superviseCommand:
		return supervise(args[1:], stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case "version", "--version":
		fmt.Fprintln(stdout, version.String("leaderelection"))
		return exitOK
	default:
		fmt.Fprintf(stderr, "leaderelection: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	if errors.Is(err, pflag.ErrHelp) {
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(stderr, "leaderelection %s: %v\n", args[0], err)
		var ee *exitErr
		if errors.As(err, &ee) {
			return ee.code
		}
		return exitError
	}
	return code
}

// common holds the flags every command shares: the backend's, the
// election's (Kubernetes' --leader-elect-* names) and klog's.
type common struct {
	fs       *pflag.FlagSet
	backends *backendflags.Flags
	opt      leaderelection.Option
	// shared names the flags every command has, by group, for usage;
	// the command's own flags are the rest.
	shared    map[string]string
	version   bool
	stdout    io.Writer
	stderr    io.Writer
	logFormat logformat.Flag
}

func newCommon(name string, stdout, stderr io.Writer) *common {
	c := &common{
		fs:       pflag.NewFlagSet("leaderelection "+name, pflag.ContinueOnError),
		backends: backendflags.New("leaderelection"),
		// Release on a graceful stop, so another copy starts at once
		// (--leader-elect-release-on-cancel=false to leave it to expire).
		opt:    leaderelection.Option{LeaseLockName: "leaderelection", LeaseLockNamespace: "default", ReleaseOnCancel: true},
		stdout: stdout,
		stderr: stderr,
	}
	c.fs.SetOutput(stderr)
	c.shared = map[string]string{}
	group := func(name string, add func()) {
		before := map[string]bool{}
		c.fs.VisitAll(func(f *pflag.Flag) { before[f.Name] = true })
		add()
		c.fs.VisitAll(func(f *pflag.Flag) {
			if !before[f.Name] {
				c.shared[f.Name] = name
			}
		})
	}
	group("Lock backend flags", func() { c.backends.AddFlags(c.fs) })
	group("Election flags (Kubernetes' names)", func() {
		c.opt.AddFlags(c.fs)
		_ = c.fs.MarkHidden("health-port") // each command's --port
		// Recovery keeps a leader's work running behind a write gate; a
		// child process's writes do not pass through one (see parse).
		_ = c.fs.MarkHidden("leader-elect-recover")
		_ = c.fs.MarkHidden("leader-elect-recover-deadline")
	})
	group("Logging flags (klog)", func() {
		kfs := goflag.NewFlagSet("klog", goflag.ContinueOnError)
		klog.InitFlags(kfs)
		c.fs.AddGoFlagSet(kfs)
		c.logFormat.AddFlags(c.fs)
	})
	c.fs.BoolVar(&c.version, "version", false, "Print the version and exit.")
	return c
}

// usage prints head, then the command's own flags, then the shared ones by
// group (backend, election, logging), so that what the command adds comes
// first and klog's many flags last.
func (c *common) usage(w io.Writer, head string) {
	sets := map[string]*pflag.FlagSet{}
	own := pflag.NewFlagSet("own", pflag.ContinueOnError)
	c.fs.VisitAll(func(f *pflag.Flag) {
		g, ok := c.shared[f.Name]
		if !ok {
			own.AddFlag(f)
			return
		}
		if sets[g] == nil {
			sets[g] = pflag.NewFlagSet(g, pflag.ContinueOnError)
		}
		sets[g].AddFlag(f)
	})
	fmt.Fprintf(w, "%s\nFlags:\n%s", head, own.FlagUsages())
	for _, g := range []string{"Lock backend flags", "Election flags (Kubernetes' names)", "Logging flags (klog)"} {
		if sets[g] != nil {
			fmt.Fprintf(w, "\n%s:\n%s", g, sets[g].FlagUsages())
		}
	}
}

// parse parses args and reports a usage error naming the problem.
func (c *common) parse(args []string) error {
	if err := c.fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageErr("%w", err)
	}
	if c.version {
		fmt.Fprintln(c.stdout, version.String("leaderelection"))
		return pflag.ErrHelp // exit 0, doing nothing else
	}
	if err := c.logFormat.Apply(c.stderr); err != nil {
		return usageErr("%w", err)
	}
	for _, f := range []string{"leader-elect-recover", "leader-elect-recover-deadline"} {
		if c.fs.Changed(f) {
			return usageErr("--%s: not available here: recovery keeps a leader's work running while its writes are held at a write gate, and a command's writes do not pass through one; without it, a leader that cannot renew stops its command", f)
		}
	}
	if !contains(c.backends.Names(), c.backends.Kind()) {
		return usageErr("--backend=%q: want one of %s", c.backends.Kind(), strings.Join(c.backends.Names(), ", "))
	}
	return nil
}

// addIdentity registers --id, by default lock.DefaultIdentity(): $POD_NAME,
// else <hostname>_<pid>, which is unique for copies on one host.
func (c *common) addIdentity() {
	c.fs.StringVar(&c.opt.ID, "id", lock.DefaultIdentity(), "This candidate's identity, unique among the candidates (default $POD_NAME, else <hostname>_<pid>).")
}

// lock builds the chosen backend's lock (for --backend=k8s, a Lease
// through the client the flags configure), or with a suffix a companion
// record beside it (backendflags.Flags.CompanionLock); a flag the backend
// needs and lacks is a usage error. The caller calls close when done.
func (c *common) lock(ctx context.Context, suffix string) (l lock.Interface, close func(), err error) {
	l, err = c.backends.CompanionLock(ctx, c.opt.ID, &c.opt, suffix)
	if err != nil {
		return nil, nil, usageErr("%w", err)
	}
	if l != nil {
		// A lock that holds resources (gossip: memberlist, and the pushes of
		// a release still being sent) is closed by the caller, so that a
		// release reaches the others before the process exits.
		if c, ok := l.(io.Closer); ok {
			return l, func() { _ = c.Close() }, nil
		}
		return l, func() {}, nil
	}
	kl, err := k8s.New(ctx, k8s.Options{Client: c.opt.KubeClient, Namespace: c.opt.LeaseLockNamespace, Name: c.opt.LeaseLockName + suffix, Identity: c.opt.ID})
	if err != nil {
		return nil, nil, usageErr("--backend=k8s: %w", err)
	}
	return kl, kl.Close, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
