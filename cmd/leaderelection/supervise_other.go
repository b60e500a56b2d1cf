//go:build unix && !linux

package main

import (
	"os"
	"syscall"
)

// selfExe is this binary; without /proc/self/exe, a file replaced since
// start is not followed.
var selfExe, _ = os.Executable()

// becomeSubreaper: only Linux has child subreapers; elsewhere only CMD's
// process group is covered.
func becomeSubreaper() {}

// children: only Linux lists a process's children cheaply.
func children() []int { return nil }

// jobAttr puts CMD in a new process group.
func jobAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
