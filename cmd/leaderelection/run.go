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
)

// runCommand is "leaderelection run [flags] -- CMD [ARGS...]".
func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	c := newCommon("run", stdout, stderr)
	c.addIdentity()
	var shell, recampaign bool
	var wait time.Duration
	c.fs.DurationVar(&wait, "wait", 0, "Give up if the lock is not acquired within this long, exiting 75, as flock -w does (0: wait as long as it takes).")
	c.fs.BoolVar(&shell, "shell", false, "Run CMD through sh -c, its words joined by spaces.")
	c.fs.BoolVar(&recampaign, "recampaign", false, "When CMD exits or leadership is lost, campaign again instead of exiting (--leader-elect-recampaign covers only a lost lease).")
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
	l, closeLock, err := c.lock(ctx, "")
	if err != nil {
		return 0, err
	}
	defer closeLock()
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
	r := &runner{argv: argv, id: c.opt.ID, lock: l.Describe(), stop: stop, renewDeadline: c.opt.RenewDeadline, stderr: stderr}
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
		code, ran := r.result()
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

	mu       sync.Mutex
	lastGood time.Time      // start of the last good acquisition or renewal
	ctl      *os.File       // the running supervisor's control pipe
	stopSig  syscall.Signal // the signal that stopped leaderelection, if any
	code     int            // the last child's status
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
	select {
	case <-done:
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
	r.finish(code)
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

func (r *runner) result() (code int, ran bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.code, r.ran
}

func (r *runner) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.code, r.ran = 0, false
}
