package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// selfExe re-executes this binary even if its file was replaced since.
const selfExe = "/proc/self/exe"

// prSetChildSubreaper is PR_SET_CHILD_SUBREAPER from <linux/prctl.h>.
const prSetChildSubreaper = 36

// becomeSubreaper makes orphaned descendants this process's children
// instead of init's, so it can wait for and kill them.
func becomeSubreaper() {
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0)
}

// jobAttr puts CMD in a new process group, and SIGKILLs it should the
// supervisor itself be killed (its grandchildren are then out of reach).
func jobAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// children lists this process's children, from every thread's
// /proc/self/task/TID/children.
func children() []int {
	files, _ := filepath.Glob("/proc/self/task/*/children")
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(b)) {
			if pid, err := strconv.Atoi(s); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}
