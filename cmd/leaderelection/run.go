//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/klog/v2"

	"github.com/b3df926d/leaderelection"
	"github.com/b3df926d/leaderelection/lock"
)

// runCommand is "leaderelection run [flags] -- CMD [ARGS...]".
func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	started := time.Now() // --once-per: this copy's period
	c := newCommon("run", stdout, stderr)
	c.addIdentity()
	var shell, recampaign bool
	var wait, period time.Duration
	c.fs.DurationVar(&wait, "wait", 0, "Give up if the lock is not acquired within this long, exiting 75, as flock -w does (0: wait as long as it takes).")
	c.fs.BoolVar(&shell, "shell", false, "Run CMD through sh -c, its words joined by spaces.")
	c.fs.BoolVar(&recampaign, "recampaign", false, "When CMD exits or leadership is lost, campaign again instead of exiting (--leader-elect-recampaign covers only a lost lease).")
	c.fs.DurationVar(&period, "once-per", 0, "Run CMD at most once per period, for copies started by cron or a timer on several machines: a copy that finds a success started within half this period of its own start exits 0 without running CMD; a failure does not count (0: every copy runs CMD). The last run is kept in a record next to the lock's, named with \""+lastRunSuffix+"\" appended.")
	c.fs.IntVar(&c.opt.Port, "port", leaderelection.NoHealthServer, "Health server port (/healthz, /livez, /readyz, /metrics, /status, /leader); -1 for none.")
	c.fs.Usage = func() {
		c.usage(stderr, "Usage: leaderelection run [flags] -- CMD [ARGS...]\n")
	}
	if err := c.parse(args); err != nil {
		return 0, err
	}
	argv, err := commandLine(c.fs.Args(), c.fs.ArgsLenAtDash(), shell)
	if err != nil {
		return 0, err
	}
	if err := checkOncePer(period, recampaign, c.opt.Disabled); err != nil {
		return 0, err
	}
	l, closeLock, err := c.lock(ctx, "")
	if err != nil {
		return 0, err
	}
	defer closeLock()
	var once *oncePer
	if period > 0 {
		record, closeRecord, err := c.lock(ctx, lastRunSuffix)
		if err != nil {
			return 0, usageErr("--once-per: %w", err)
		}
		defer closeRecord()
		once = &oncePer{period: period, started: started, record: record}
	}
	c.opt.Lock = l
	c.opt.Run = func(context.Context) {}
	if err := c.opt.Validate(); err != nil {
		return 0, usageErr("%w", err)
	}
	// The stop timeout is the child's grace between SIGTERM and SIGKILL.
	// By default SIGKILL comes LeaseDuration after the last good renewal
	// began: the earliest moment another candidate may acquire.
	stop := c.opt.StopTimeout
	if stop == 0 {
		stop = c.opt.LeaseDuration - c.opt.RenewDeadline
	}
	if recampaign {
		// A lost lease: the elector campaigns again itself, keeping the
		// health server; the loop below handles CMD's own exit.
		c.opt.Recampaign = true
	}
	r := &runner{argv: argv, id: c.opt.ID, lock: l.Describe(), stop: stop, renewDeadline: c.opt.RenewDeadline, once: once, stderr: stderr}
	c.opt.Lock = timeRenewals(l, r.renewed, r.corrupt)
	c.opt.Run = r.lead
	if c.opt.Disabled {
		klog.InfoS("WARNING: --leader-elect=false: no election; this copy runs the command whatever other copies do, so every copy started this way runs it", "command", argv[1:])
	}
	// The elector waits for r.lead, which waits for the supervisor to
	// SIGKILL and reap the group after the stop timeout; give it time
	// beyond that before the elector gives up on it.
	c.opt.StopTimeout = stop + c.opt.RenewDeadline

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.giveUp = cancel
	if wait > 0 {
		t := time.AfterFunc(wait, func() { r.stopWaiting(stopTimedOut) })
		defer t.Stop()
	}
	sigc := make(chan os.Signal, 2)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigc)
	go r.handleSignals(sigc, cancel)

	for {
		err := leaderelection.Run(ctx, c.opt)
		code, ran, leadErr := r.result()
		if r.isActive() {
			// The elector gave up waiting (StopTimeout): the job's
			// processes may live. Exiting closes the control pipe, so
			// the supervisor SIGKILLs them; never start another term.
			return 0, fmt.Errorf("the command's processes outlived the stop timeout (%v): %w", stop, err)
		}
		switch why, rerr := r.gaveUpFor(); {
		case why == stopTimedOut && !ran:
			return 0, &exitErr{code: exitTimeout, err: fmt.Errorf("the lock %s was not acquired within --wait=%v", l.Describe(), wait)}
		case why == stopCorrupt && !ran:
			return 0, &exitErr{code: exitCorrupt, err: fmt.Errorf("the lock's record is corrupt, so no copy can lead until it is repaired; delete it to recover (a candidate then takes over a lease later, continuing from the last term it saw): %w", rerr)}
		case leadErr != nil:
			return 0, leadErr
		case ctx.Err() != nil && err == nil:
			// Stopped by a signal: the child's status if one ran.
			return code, nil
		case errors.Is(err, leaderelection.ErrLeaseLost) && recampaign:
			klog.InfoS("Campaigning again after losing the lease", "err", err)
		case err != nil:
			return 0, err
		case !ran:
			return exitOK, nil
		case recampaign:
			klog.InfoS("Campaigning again after the command exited", "status", code)
		default:
			return code, nil
		}
		r.reset()
	}
}

// checkOncePer rejects a --once-per that cannot mean once per period.
func checkOncePer(period time.Duration, recampaign, noElection bool) error {
	switch {
	case period == 0:
		return nil
	case period < 0:
		return usageErr("--once-per=%v: must not be negative (0: every copy runs the command)", period)
	case period < minOncePer:
		return usageErr("--once-per=%v: want at least %v (the record keeps times to the second, and copies of one period may start half a period apart)", period, minOncePer)
	case recampaign:
		return usageErr("--once-per=%v and --recampaign: a copy that campaigns again would find its own run done; start one copy per period instead", period)
	case noElection:
		return usageErr("--once-per=%v and --leader-elect=false: without the lock, no record of the last run is kept", period)
	}
	return nil
}

// commandLine returns CMD's path and argv from what followed "--".
func commandLine(args []string, dash int, shell bool) ([]string, error) {
	switch {
	case dash < 0 && len(args) > 0:
		return nil, usageErr("put the command after --: leaderelection run [flags] -- %s", strings.Join(args, " "))
	case dash > 0:
		return nil, usageErr("unexpected arguments before --: %s", strings.Join(args[:dash], " "))
	case len(args) == 0:
		return nil, usageErr("no command after --: leaderelection run [flags] -- CMD [ARGS...]")
	}
	if shell {
		args = []string{"sh", "-c", strings.Join(args, " ")}
	}
	path, err := exec.LookPath(args[0])
	if err != nil {
		return nil, &exitErr{code: exitNotFound, err: fmt.Errorf("cannot run %q: %w", args[0], err)}
	}
	return append([]string{path}, args...), nil
}

// runner runs the command for each term, through a supervisor process.
type runner struct {
	argv   []string // path, then argv
	id     string
	lock   string
	stop   time.Duration
	stderr io.Writer

	// renewDeadline: the elector steps down this long after its last
	// good renewal began, and so does the supervisor.
	renewDeadline time.Duration
	// once, with --once-per, skips a term whose period is done and
	// records each run of CMD.
	once *oncePer

	mu       sync.Mutex
	lastGood time.Time      // start of the last good acquisition or renewal
	ctl      *os.File       // the running supervisor's control pipe
	stopSig  syscall.Signal // the signal that stopped leaderelection, if any
	code     int            // the last child's status
	err      error          // why a term ended without running CMD
	ran      bool           // a child ran in the current campaign
	active   bool           // lead is running
	led      bool           // lead was called in this process
	// giveUp cancels the campaign; why and whyErr say why it was given up
	// (--wait ran out, a corrupt record) before any term started.
	giveUp func()
	why    stopReason
	whyErr error
}

// stopReason is why run gave up campaigning before leading.
type stopReason int

const (
	stopNone     stopReason = iota
	stopTimedOut            // --wait ran out
	stopCorrupt             // the record is corrupt
)

// stopWaiting gives up the campaign for why, unless a term has started
// (lead decides under the same mutex, so the job never starts after).
func (r *runner) stopWaiting(why stopReason) {
	r.mu.Lock()
	if r.led || r.why != stopNone {
		r.mu.Unlock()
		return
	}
	r.why = why
	r.mu.Unlock()
	r.giveUp()
}

// corrupt is called with every read that found the record corrupt: while
// no term has started, run gives up with exitCorrupt (a cron job must not
// wait for ever, piling up); a leader that finds it steps down anyway.
func (r *runner) corrupt(err error) {
	r.mu.Lock()
	if r.whyErr == nil {
		r.whyErr = err
	}
	r.mu.Unlock()
	r.stopWaiting(stopCorrupt)
}

// gaveUpFor reports why the campaign was given up, if it was.
func (r *runner) gaveUpFor() (stopReason, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.why, r.whyErr
}

// lead runs CMD for one term; the elector cancels ctx the moment the term
// ends.
func (r *runner) lead(ctx context.Context) {
	r.mu.Lock()
	gaveUp := r.why != stopNone
	r.led = !gaveUp
	r.mu.Unlock()
	if gaveUp {
		return // too late: --wait ran out, or the record was corrupt
	}
	r.setActive(true)
	defer r.setActive(false)
	term, _ := leaderelection.TermFrom(ctx)
	log := klog.FromContext(ctx).WithValues("term", term)
	if r.once != nil && r.skipDonePeriod(ctx, log) {
		return
	}
	rd, wr, err := os.Pipe()
	if err != nil {
		log.Error(err, "Creating the control pipe")
		r.finish(exitError)
		return
	}
	defer wr.Close()
	// The supervisor reports the command's pid on this pipe once it has
	// started it (end of file without one: it could not start it).
	pidR, pidW, err := os.Pipe()
	if err != nil {
		rd.Close()
		log.Error(err, "Creating the report pipe")
		r.finish(exitError)
		return
	}
	defer pidR.Close()
	sup := exec.Command(selfExe, append([]string{superviseCommand, r.stop.String()}, r.argv...)...)
	sup.Env = append(os.Environ(),
		"LEADER_ELECTION_TERM="+strconv.FormatInt(term, 10),
		"LEADER_ELECTION_IDENTITY="+r.id,
		"LEADER_ELECTION_LOCK="+r.lock,
	)
	sup.Stdin, sup.Stdout, sup.Stderr = os.Stdin, os.Stdout, os.Stderr
	sup.ExtraFiles = []*os.File{rd, pidW}
	// Its own group: a terminal's ^C reaches leaderelection, which
	// decides what the child gets.
	sup.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = sup.Start()
	rd.Close()
	pidW.Close()
	if err != nil {
		log.Error(err, "Starting the supervisor")
		r.finish(exitError)
		return
	}
	r.mu.Lock()
	r.ctl = wr
	r.sendDeadline()
	r.mu.Unlock()
	// The command's pid, not the supervisor's: the one an operator looks
	// for in ps or kills.
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		var pid int
		if _, err := fmt.Fscanf(pidR, "pid %d\n", &pid); err == nil {
			log.Info("Started the command", "pid", pid, "supervisor", sup.Process.Pid, "command", r.argv[1:])
		}
	}()
	done := make(chan struct{})
	go func() { _ = sup.Wait(); <-reported; close(done) }()
	exited := false // by itself, in this term
	select {
	case <-done:
		exited = true
		log.Info("The command exited", "status", sup.ProcessState.ExitCode())
	case <-ctx.Done():
		r.mu.Lock()
		sig := r.stopSig
		r.mu.Unlock()
		if sig == 0 {
			sig = syscall.SIGTERM
		}
		log.Info("Leadership ended; signalling the command's process group", "signal", sig.String(), "killAfter", r.stop)
		r.signal(sig)
		<-done // the supervisor SIGKILLs what is left after r.stop
		log.Info("The command's process group is gone", "status", sup.ProcessState.ExitCode())
	}
	r.mu.Lock()
	r.ctl = nil
	r.mu.Unlock()
	code := sup.ProcessState.ExitCode()
	if code < 0 { // the supervisor was killed
		code = exitError
	}
	if r.once != nil && exited {
		// Before the release: the next holder must see this run. A run
		// stopped by a signal or a lost lease is not recorded, and so
		// not done.
		run := lastRun{id: r.id, term: term, started: r.once.started, finished: time.Now(), status: code}
		if err := r.once.recordRun(ctx, run); err != nil {
			log.Error(err, "The next copy will run the command again")
		} else {
			log.Info("Recorded the run", "record", r.once.record.Describe(), "status", code)
		}
	}
	r.finish(code)
}

// skipDonePeriod reports whether --once-per finds this copy's period
// already done, finishing the term without running CMD if so (exit 0) or
// if the record cannot be read (an error: running CMD might run it twice).
func (r *runner) skipDonePeriod(ctx context.Context, log klog.Logger) bool {
	last, done, err := r.once.doneThisPeriod(ctx)
	switch {
	case err != nil && ctx.Err() != nil:
		return true // the term ended: a signal, or a lost lease
	case errors.Is(err, lock.ErrCorrupt):
		err = &exitErr{code: exitCorrupt, err: fmt.Errorf("--once-per: the record of the last run is corrupt; delete it to recover (the next copy then runs the command): %w", err)}
	case err != nil:
		err = fmt.Errorf("--once-per: %w", err)
	case !done:
		return false
	default:
		log.Info(fmt.Sprintf("Not running the command: already ran this period: term %d finished at %s by %s", last.term, last.finished.Format(time.RFC3339), last.id),
			"started", last.started.Format(time.RFC3339), "thisCopyStarted", r.once.started.Format(time.RFC3339), "oncePer", r.once.period, "record", r.once.record.Describe())
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ran, r.err = true, err
	return true
}

// renewed records the start of a good acquisition or renewal and tells
// the supervisor its new deadline.
func (r *runner) renewed(start time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if start.After(r.lastGood) {
		r.lastGood = start
	}
	r.sendDeadline()
}

// sendDeadline tells the running supervisor how long the job may run
// without a newer renewal: until the elector's own step-down instant. The
// pipe takes microseconds; the lease's margin beyond RenewDeadline absorbs
// that. Called with r.mu held.
func (r *runner) sendDeadline() {
	if r.ctl == nil || r.lastGood.IsZero() {
		return
	}
	left := time.Until(r.lastGood.Add(r.renewDeadline))
	_, _ = fmt.Fprintf(r.ctl, "deadline %d\n", int64(left))
}

// signal forwards sig to the running child's process group, if any.
func (r *runner) signal(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctl != nil {
		_, _ = fmt.Fprintf(r.ctl, "signal %d\n", int(sig))
	}
}

// handleSignals stops gracefully on the first SIGTERM or SIGINT, which the
// child gets as it is; later ones are forwarded as they come.
func (r *runner) handleSignals(sigc <-chan os.Signal, cancel context.CancelFunc) {
	first := true
	for s := range sigc {
		sig := s.(syscall.Signal)
		if first {
			first = false
			r.mu.Lock()
			r.stopSig = sig
			r.mu.Unlock()
			klog.InfoS("Stopping", "signal", sig.String())
			cancel()
			continue
		}
		r.signal(sig)
	}
}

func (r *runner) setActive(a bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active = a
}

func (r *runner) isActive() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.active
}

func (r *runner) finish(code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.code, r.ran = code, true
}

// result is the last term's: CMD's status, whether CMD ran (or the term
// was done with at once: --once-per), and why it ended without CMD.
func (r *runner) result() (code int, ran bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.code, r.ran, r.err
}

func (r *runner) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.code, r.ran, r.err = 0, false, nil
}
