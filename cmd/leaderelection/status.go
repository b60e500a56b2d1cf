package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/b3df926d/leaderelection/healthz"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/shard"
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
	// Shards is set when the lock's record does not exist and a shard
	// set (package shard) of the lock's name does: its assignment record
	// (Lock then names that record).
	Shards *shardSet `json:"shards,omitempty"`
}

// shardSet is a shard set's assignment, each member marked live when its
// slot record still names it within its lease (by this host's clock).
type shardSet struct {
	Generation int64       `json:"generation"`
	Count      int         `json:"count"`
	Members    []setMember `json:"members"`
}

type setMember struct {
	healthz.ShardMember
	Live bool `json:"live"`
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
		set, err := c.shardSet(ctx)
		if err != nil {
			return 0, err
		}
		if set != nil {
			st = *set
		}
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
	if !st.Held && !st.Shards.live() {
		return exitFree, nil
	}
	return exitOK, nil
}

// shardSet reads the assignment record of the shard set named as the
// lock (the companion record shard.AssignmentSuffix beside it, as
// example --shards writes it): nil if there is none, or the backend has
// no companion records (gossip).
func (c *common) shardSet(ctx context.Context) (*lockStatus, error) {
	l, closeLock, err := c.lock(ctx, shard.AssignmentSuffix)
	if err != nil {
		return nil, nil //nolint:nilerr // no companion records: no shard set
	}
	defer closeLock()
	rec, err := getRecord(ctx, l)
	if rec == nil || err != nil {
		return nil, err
	}
	a, err := shard.DecodeAssignment(rec)
	if err != nil {
		return nil, nil //nolint:nilerr // a record of another kind
	}
	set := &shardSet{Generation: a.Generation, Count: a.Count}
	for _, m := range a.Members {
		sl, closeSlot, err := c.lock(ctx, shard.SlotSuffix(m.Slot))
		if err != nil {
			return nil, err
		}
		slot, err := getRecord(ctx, sl)
		closeSlot()
		if err != nil {
			return nil, err
		}
		// Live: the slot names m, and its lease has not run out by this
		// host's clock.
		live := slot != nil && shard.SlotHolder(slot) == m.Identity &&
			time.Now().Before(slot.RenewTime.Add(time.Duration(slot.LeaseDurationSeconds)*time.Second))
		set.Members = append(set.Members, setMember{m, live})
	}
	return &lockStatus{Lock: l.Describe(), Exists: true, RenewTime: rec.RenewTime.Time, Shards: set}, nil
}

// getRecord reads l's record: nil if it does not exist.
func getRecord(ctx context.Context, l lock.Interface) (*lock.Record, error) {
	rec, _, err := l.Get(ctx)
	switch {
	case lock.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading %s: %w", l.Describe(), err)
	}
	return rec, nil
}

// live reports whether some member of the set is live.
func (s *shardSet) live() bool {
	if s == nil {
		return false
	}
	for _, m := range s.Members {
		if m.Live {
			return true
		}
	}
	return false
}

func printStatus(w io.Writer, st lockStatus) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	defer tw.Flush()
	fmt.Fprintf(tw, "lock:\t%s\n", st.Lock)
	if st.Shards != nil {
		printShards(tw, st)
		return
	}
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

// printShards prints a shard set's assignment: its generation, shard
// count, and each member's shards.
func printShards(tw *tabwriter.Writer, st lockStatus) {
	a := st.Shards
	fmt.Fprintf(tw, "state:\tshard set (no record of its own; this is the set's assignment)\n")
	fmt.Fprintf(tw, "generation:\t%d\n", a.Generation)
	fmt.Fprintf(tw, "shards:\t%d\n", a.Count)
	fmt.Fprintf(tw, "written:\t%s\n", stamp(st.RenewTime, time.Now()))
	fmt.Fprintf(tw, "members:\t%d\n", len(a.Members))
	tw.Flush() // one line per member, outside the columns
	for _, m := range a.Members {
		shards := make([]string, len(m.Shards))
		for i, s := range m.Shards {
			shards[i] = strconv.Itoa(s)
		}
		state := "live"
		if !m.Live {
			state = "gone (its slot no longer names it within its lease)"
		}
		fmt.Fprintf(tw, "  %s (slot %d, %s): %d shards: %s\n", m.Identity, m.Slot, state, len(m.Shards), strings.Join(shards, " "))
	}
}

func stamp(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s (%s ago)", t.UTC().Format(time.RFC3339), now.Sub(t).Round(time.Second))
}
