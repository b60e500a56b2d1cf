//go:build unix

package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// superviseCommand is the hidden subcommand that run starts, as a copy of
// this binary, to be CMD's parent for one term:
//
//	leaderelection __supervise STOP-TIMEOUT PATH ARGV0 [ARGS...]
//
// It puts CMD in a new process group, becomes a child subreaper (Linux),
// so that every descendant whose parent dies is re-parented to it, and
// reads commands from the pipe on fd 3, whose only writer is the
// leaderelection process (and writes "pid N" on fd 4 once CMD runs):
//
//	signal N     forward signal N to CMD's group (the term is ending)
//	deadline D   the term lasts at most D (nanoseconds) more unless a
//	             newer deadline comes: leaderelection's step-down instant
//
// End of file on fd 3 means leaderelection died (even by SIGKILL, since the
// kernel closes its descriptors): the supervisor SIGKILLs the group and
// every descendant at once. A forwarded signal, a signal sent to the
// supervisor itself (TERM, INT, HUP), a deadline passing (leaderelection
// is paused or wedged and cannot step down), or CMD exiting by itself while
// others of its group live on, starts STOP-TIMEOUT, after which everything
// left is SIGKILLed. The supervisor exits with CMD's status once CMD and
// every descendant it can see are gone, so a term ends only when its
// processes have.
const superviseCommand = "__supervise"

func supervise(args []string, stderr io.Writer) int {
	if len(args) < 3 {
		fmt.Fprintln(stderr, "leaderelection: __supervise is started by leaderelection run")
		return exitUsage
	}
	stopTimeout, err := time.ParseDuration(args[0])
	if err != nil {
		fmt.Fprintln(stderr, "leaderelection: __supervise:", err)
		return exitUsage
	}
	path, argv := args[1], args[2:]
	ctl := os.NewFile(3, "leaderelection-control")
	if ctl == nil {
		fmt.Fprintln(stderr, "leaderelection: __supervise: no control pipe on fd 3")
		return exitUsage
	}
	syscall.CloseOnExec(3)
	// fd 4: where CMD's pid is reported, once started.
	report := os.NewFile(4, "leaderelection-report")
	syscall.CloseOnExec(4)
	becomeSubreaper()
	// Signals to the supervisor are forwarded, not fatal: only
	// leaderelection's end (fd 3) or CMD's end ends it.
	sigc := make(chan os.Signal, 4)
	signal.Notify(sigc, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)

	// Pdeathsig (Linux) fires when the forking thread ends: keep this
	// goroutine on it for the supervisor's life.
	runtime.LockOSThread()
	pid, err := syscall.ForkExec(path, argv, &syscall.ProcAttr{
		Env:   os.Environ(),
		Files: []uintptr{0, 1, 2},
		Sys:   jobAttr(),
	})
	if err != nil {
		report.Close()
		fmt.Fprintf(stderr, "leaderelection: cannot run %s: %v\n", path, err)
		return exitNotFound
	}
	fmt.Fprintf(report, "pid %d\n", pid)
	report.Close()

	exited := make(chan int, 1)      // CMD's status
	reaped := make(chan struct{}, 1) // a descendant was reaped
	allGone := make(chan struct{})   // no child left (wait4: ECHILD)
	go reap(pid, exited, reaped, allGone)
	ctlSig := make(chan syscall.Signal)
	ctlDeadline := make(chan time.Time)
	ctlEOF := make(chan struct{})
	go readControl(ctl, ctlSig, ctlDeadline, ctlEOF)
	var deadline *time.Timer
	var deadlineC <-chan time.Time

	code := -1
	var stopTimer, killTicker <-chan time.Time
	killing := false
	var stopSig syscall.Signal
	signalled := map[int]bool{} // re-parented descendants sent stopSig
	// signalOrphans signals descendants that left the group (setsid) and
	// were re-parented to this subreaper once their parent died; stop
	// signals reach each one once.
	signalOrphans := func(sig syscall.Signal) {
		for _, c := range children() {
			if sig == syscall.SIGKILL || !signalled[c] {
				signalled[c] = true
				_ = syscall.Kill(c, sig)
			}
		}
	}
	killAll := func(sig syscall.Signal) {
		_ = syscall.Kill(-pid, sig)
		signalOrphans(sig)
	}
	stop := func(sig syscall.Signal) {
		if killing {
			return
		}
		stopSig = sig
		killAll(sig)
		if stopTimer == nil {
			stopTimer = time.After(stopTimeout)
		}
	}
	kill := func() {
		if !killing {
			killing = true
			// Re-kill while anything is left: a descendant re-parented
			// to this process after the first round is killed too.
			killTicker = time.Tick(20 * time.Millisecond)
		}
		killAll(syscall.SIGKILL)
	}
	for {
		select {
		case code = <-exited:
			// The rest of CMD's group, if any, does not outlive its term.
			if stopSig == 0 {
				stop(syscall.SIGTERM)
			}
		case <-allGone:
			// reap reports CMD's status before it closes allGone.
			select {
			case code = <-exited:
			default:
			}
			if code < 0 {
				code = exitError
			}
			return code
		case sig := <-ctlSig:
			stop(sig)
		case at := <-ctlDeadline:
			if deadline == nil {
				deadline = time.NewTimer(time.Until(at))
				deadlineC = deadline.C
			} else {
				deadline.Reset(time.Until(at))
			}
		case <-deadlineC:
			if stopSig == 0 {
				fmt.Fprintln(stderr, "leaderelection: no renewal within the renew deadline and no word from leaderelection: stopping the job")
				stop(syscall.SIGTERM)
			}
		case s := <-sigc:
			stop(s.(syscall.Signal))
		case <-ctlEOF:
			kill()
		case <-stopTimer:
			kill()
		case <-reaped:
			switch {
			case killing:
				killAll(syscall.SIGKILL)
			case stopSig != 0:
				signalOrphans(stopSig)
			}
		case <-killTicker:
			killAll(syscall.SIGKILL)
		}
	}
}

// reap waits for every child of this process (CMD, and orphans re-parented
// to the subreaper), reports CMD's status, and closes allGone when none is
// left.
func reap(pid int, exited chan<- int, reaped chan<- struct{}, allGone chan<- struct{}) {
	defer close(allGone)
	for {
		var ws syscall.WaitStatus
		p, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return // ECHILD
		}
		if p == pid {
			exited <- statusCode(ws)
		}
		select {
		case reaped <- struct{}{}:
		default:
		}
	}
}

// statusCode is a shell's $? for ws: the exit status, or 128+signal.
func statusCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// readControl reads leaderelection's commands from the control pipe until
// end of file. A deadline is taken as an instant on this process's clock
// when it is read.
func readControl(ctl *os.File, sigs chan<- syscall.Signal, deadlines chan<- time.Time, eof chan<- struct{}) {
	sc := bufio.NewScanner(ctl)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "signal":
			sigs <- syscall.Signal(n)
		case "deadline":
			deadlines <- time.Now().Add(time.Duration(n))
		}
	}
	close(eof)
}
