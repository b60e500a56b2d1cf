package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/b3df926d/leaderelection/lock"
)

// statusIdentity is the identity status reads under; it never writes.
const statusIdentity = "leaderelection-status"

// lockStatus is status's report; -o json prints it as is.
type lockStatus struct {
	Lock string `json:"lock"`
	// Held: a holder is named and its lease has not run out by this
	// host's clock.
	Held   bool   `json:"held"`
	Holder string `json:"holder"`
	// Term is the record's LeaderTransitions: the holder's fencing token.
	Term          int64     `json:"term"`
	AcquireTime   time.Time `json:"acquireTime,omitzero"`
	RenewTime     time.Time `json:"renewTime,omitzero"`
	LeaseDuration string    `json:"leaseDuration"`
	// Expired: the last renewal plus the lease is in the past by this
	// host's clock (a skewed clock can make a live lease look expired).
	Expired bool `json:"expired"`
	// Exists is false when the store holds no record at all.
	Exists bool `json:"exists"`
	// Claim: the holder has claimed the lock (a record with no
	// acquireTime) but does not lead yet; it leads once it confirms the
	// claim, unless another candidate replaces it first (docs/elector.md,
	// "A deleted record").
	Claim bool `json:"claim,omitempty"`
}

// statusCommand is "leaderelection status [flags]": read the lock once.
// Exit 0 when held, 3 when free or expired, 1 on error.
func statusCommand(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	c := newCommon("status", stdout, stderr)
	var output string
	var timeout time.Duration
	c.fs.StringVarP(&output, "output", "o", "text", "Output format: text or json.")
	c.fs.DurationVar(&timeout, "timeout", 30*time.Second, "How long to wait for the store.")
	c.fs.Usage = func() {
		c.usage(stderr, "Usage: leaderelection status [flags]\n\nExit status: 0 held, 3 free or expired, 1 error.\n")
	}
	c.opt.ID = statusIdentity
	if err := c.parse(args); err != nil {
		return 0, err
	}
	if output != "text" && output != "json" {
		return 0, usageErr("-o %q: want text or json", output)
	}
	if c.fs.NArg() > 0 {
		return 0, usageErr("status takes no arguments, got %q", c.fs.Args())
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	l, closeLock, err := c.lock(ctx, "")
	if err != nil {
		return 0, err
	}
	defer closeLock()
	st := lockStatus{Lock: l.Describe()}
	rec, _, err := l.Get(ctx)
	switch {
	case lock.IsNotFound(err):
	case err != nil:
		return 0, fmt.Errorf("reading %s: %w", l.Describe(), err)
	default:
		st.Exists = true
		st.Holder = rec.HolderIdentity
		st.Term = int64(rec.LeaderTransitions)
		st.AcquireTime = rec.AcquireTime.Time
		st.RenewTime = rec.RenewTime.Time
		lease := time.Duration(rec.LeaseDurationSeconds) * time.Second
		st.LeaseDuration = lease.String()
		st.Expired = time.Now().After(st.RenewTime.Add(lease))
		st.Held = st.Holder != "" && !st.Expired
		st.Claim = lock.IsClaim(*rec)
	}
	if output == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(st); err != nil {
			return 0, err
		}
	} else {
		printStatus(stdout, st)
	}
	if !st.Held {
		return exitFree, nil
	}
	return exitOK, nil
}

func printStatus(w io.Writer, st lockStatus) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintf(tw, "lock:\t%s\n", st.Lock)
	state := "held"
	switch {
	case !st.Exists:
		state = "free (no record)"
	case st.Holder == "":
		state = "free (released)"
	case st.Expired:
		state = "expired (not renewed within the lease, by this host's clock)"
	case st.Claim:
		state = "claimed (held; the holder leads once it confirms the claim)"
	}
	fmt.Fprintf(tw, "state:\t%s\n", state)
	if !st.Exists {
		return
	}
	holder := st.Holder
	if holder == "" {
		holder = "(none)"
	}
	fmt.Fprintf(tw, "holder:\t%s\n", holder)
	fmt.Fprintf(tw, "term:\t%d\n", st.Term)
	now := time.Now()
	fmt.Fprintf(tw, "acquired:\t%s\n", stamp(st.AcquireTime, now))
	fmt.Fprintf(tw, "renewed:\t%s\n", stamp(st.RenewTime, now))
	fmt.Fprintf(tw, "lease duration:\t%s\n", st.LeaseDuration)
	fmt.Fprintf(tw, "expired:\t%t\n", st.Expired)
}

func stamp(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), now.Sub(t).Round(time.Second))
}
