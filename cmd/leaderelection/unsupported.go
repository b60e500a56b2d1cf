//go:build !unix

package main

import (
	"context"
	"errors"
	"io"
)

const superviseCommand = "__supervise"

var errUnix = errors.New("needs a Unix system (process groups)")

func runCommand(context.Context, []string, io.Writer, io.Writer) (int, error) { return 0, errUnix }

func supervise([]string, io.Writer) int { return exitError }
