// Package k8s is the leader-election lock on a Kubernetes
// coordination.k8s.io/v1 Lease.
//
// The lock is client-go's own resourcelock.LeaseLock, so the Lease it writes
// is the one kube-controller-manager, client-go's elector and
// controller-runtime read and write; a fleet may mix them. Around it this
// package adds what the elector needs to be fast and cheap:
//
//   - a lock.Watcher that watches only this Lease (a field selector on its
//     name), so followers learn of a release or a new holder within
//     milliseconds instead of polling;
//   - while that watch is established, Get is answered from the watch's
//     latest object, as an informer's cache would be: its resourceVersion is
//     a valid compare-and-swap token, and a stale one merely loses the race
//     (after which the next Get asks the API server). Followers therefore
//     cost the API server nothing between changes;
//   - Kubernetes Events on leadership changes;
//   - a Lease whose holder has no duration or renew time is reported as
//     corrupt (lock.ErrCorrupt) rather than taken over.
//
// Compare-and-swap rests on the API server's resourceVersion precondition on
// update (an etcd transaction on the object's mod revision), and on create
// failing when the object exists.
package k8s

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	writegate "github.com/b3df926d/leaderelection/gate"
	"github.com/b3df926d/leaderelection/internal/notify"
	"github.com/b3df926d/leaderelection/lock"
)

// Options configure a Lease lock. Client, Namespace and Name are required.
type Options struct {
	// Client talks to the API server. Required.
	Client kubernetes.Interface
	// Namespace and Name locate the Lease. Required.
	Namespace, Name string
	// Identity is this candidate's identity; empty means
	// lock.DefaultIdentity() ($POD_NAME, else "<hostname>_<pid>").
	Identity string
	// Labels are set on the Lease when this candidate creates or updates it.
	Labels map[string]string

	// EventRecorder receives the leadership events. If nil, events are
	// sent to the API server through Client (from a broadcaster started on
	// the first event and stopped by Close), unless DisableEvents is set.
	EventRecorder resourcelock.EventRecorder
	// DisableEvents turns events off.
	DisableEvents bool

	// Logger receives the watch's structured logs (default: klog's global
	// logger).
	Logger *klog.Logger
}

// Lock is a leader-election lock on one Lease. It implements lock.Interface
// and lock.Watcher. Use one Lock per candidate, calling Get, Create, Update
// and RecordEvent from one goroutine at a time, as electors do; Changes and
// Close may be called from any goroutine.
type Lock struct {
	inner  *resourcelock.LeaseLock
	leases coordinationv1client.LeaseInterface // the real client
	desc   string
	name   string
	log    klog.Logger

	client        kubernetes.Interface
	recorder      resourcelock.EventRecorder
	disableEvents bool

	hub notify.Hub

	mu          sync.Mutex
	subscribers int
	stopWatch   context.CancelFunc
	watchDone   chan struct{}
	live        bool     // the watch is established: snap is current
	snap        snapshot // newest Lease seen, by watch, read or write
	distrust    bool     // a write lost or failed: the next Get asks the server
	corrupt     error    // the last Get found a corrupt record: Update refuses
	known       bool     // inner holds a Lease (RecordEvent needs one)
	broadcaster record.EventBroadcaster
	closed      bool
}

// snapshot is the newest state of the Lease this lock knows, by
// resourceVersion. lease == nil with rv > 0 means absent at rv.
type snapshot struct {
	lease *coordinationv1.Lease
	rv    uint64
}

var (
	_ lock.Interface  = (*Lock)(nil)
	_ lock.Watcher    = (*Lock)(nil)
	_ lock.WatchState = (*Lock)(nil)
)

// gatedClient reports whether client's Lease requests pass through a write
// gate (package gate).
func gatedClient(client kubernetes.Interface) bool {
	rc, ok := client.CoordinationV1().RESTClient().(*rest.RESTClient)
	return ok && rc != nil && rc.Client != nil && writegate.Holds(rc.Client.Transport)
}

// New returns a lock on the Lease opts.Namespace/opts.Name. It makes no API
// call; ctx is for the signature every backend shares.
// A Client built from a rest.Config that went through gate.Config is
// refused: the lock's own writes would be refused while the gate is closed.
func New(ctx context.Context, opts Options) (*Lock, error) {
	var errs []error
	if opts.Client == nil {
		errs = append(errs, errors.New("k8s: Client must not be nil"))
	}
	if opts.Namespace == "" {
		errs = append(errs, errors.New("k8s: Namespace must not be empty"))
	}
	if opts.Name == "" {
		errs = append(errs, errors.New("k8s: Name must not be empty"))
	}
	if opts.Client != nil && gatedClient(opts.Client) {
		errs = append(errs, errors.New("k8s: Client goes through a write gate (its rest.Config went through gate.Config): the lock's own renewals would be refused whenever the gate is closed, so this process could never lead; build the lock's client (Option.KubeClient) from the ungated rest.Config, and only the leader's other clients from the gated one"))
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, fmt.Errorf("k8s: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Identity == "" {
		opts.Identity = lock.DefaultIdentity()
	}
	logger := klog.Background()
	if opts.Logger != nil {
		logger = *opts.Logger
	}
	l := &Lock{
		leases:        opts.Client.CoordinationV1().Leases(opts.Namespace),
		name:          opts.Name,
		client:        opts.Client,
		recorder:      opts.EventRecorder,
		disableEvents: opts.DisableEvents,
	}
	l.inner = &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: opts.Namespace, Name: opts.Name},
		Client:     leasesGetter{l},
		LockConfig: resourcelock.ResourceLockConfig{Identity: opts.Identity, EventRecorder: eventSink{l}},
		Labels:     opts.Labels,
	}
	l.desc = l.inner.Describe()
	l.log = logger.WithValues("lease", l.desc)
	return l, nil
}

// Get returns the record and remembers its resourceVersion. While the watch
// (see Changes) is established it answers from the watch's latest object
// without an API call.
func (l *Lock) Get(ctx context.Context) (*lock.Record, []byte, error) {
	rec, raw, err := l.inner.Get(ctx)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil, l.notFound(err)
		}
		return nil, nil, fmt.Errorf("lease %s: get: %w", l.desc, err)
	}
	l.mu.Lock()
	l.known = true
	l.corrupt = nil
	if err := validRecord(rec); err != nil {
		l.corrupt = lock.NewCorrupt(l.desc, err)
	}
	corrupt := l.corrupt
	l.mu.Unlock()
	if corrupt != nil {
		return nil, nil, corrupt
	}
	return rec, raw, nil
}

// validRecord rejects a Lease that names a holder but not for how long:
// nobody can tell when it expires, so taking it over could make two leaders.
func validRecord(rec *lock.Record) error {
	if rec.HolderIdentity == "" {
		return nil
	}
	if rec.LeaseDurationSeconds <= 0 {
		return fmt.Errorf("holder %q has no leaseDurationSeconds", rec.HolderIdentity)
	}
	if rec.RenewTime.IsZero() {
		return fmt.Errorf("holder %q has no renewTime", rec.HolderIdentity)
	}
	return nil
}

func (l *Lock) notFound(cause error) error {
	return fmt.Errorf("lease %s: %w", l.desc, cause)
}

// Create creates the Lease with rec; it fails with a conflict if the Lease
// exists.
func (l *Lock) Create(ctx context.Context, rec lock.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("lease %s: create: %w", l.desc, err)
	}
	if err := l.inner.Create(ctx, rec); err != nil {
		return fmt.Errorf("lease %s: create: %w", l.desc, err)
	}
	l.mu.Lock()
	l.known = true
	l.mu.Unlock()
	return nil
}

// Update writes rec if the Lease still has the resourceVersion this lock
// last read or wrote.
func (l *Lock) Update(ctx context.Context, rec lock.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("lease %s: update: %w", l.desc, err)
	}
	l.mu.Lock()
	corrupt := l.corrupt
	l.mu.Unlock()
	if corrupt != nil {
		return fmt.Errorf("refusing to overwrite: %w", corrupt)
	}
	if err := l.inner.Update(ctx, rec); err != nil {
		return fmt.Errorf("lease %s: update: %w", l.desc, err)
	}
	return nil
}

// RecordEvent records a leadership event on the Lease (client-go's elector
// and ours call it with "became leader" and "stopped leading").
func (l *Lock) RecordEvent(s string) {
	l.mu.Lock()
	known := l.known
	l.mu.Unlock()
	if known {
		l.inner.RecordEvent(s)
	}
}

// Identity returns the candidate's identity.
func (l *Lock) Identity() string { return l.inner.Identity() }

// Describe names the Lease as namespace/name, as client-go's LeaseLock does.
func (l *Lock) Describe() string { return l.desc }

// Close stops the watch and the event broadcaster this lock started. The
// lock must not be used afterwards.
func (l *Lock) Close() {
	l.mu.Lock()
	l.closed = true
	stop, done, b := l.stopWatch, l.watchDone, l.broadcaster
	l.stopWatch, l.broadcaster = nil, nil
	l.mu.Unlock()
	if stop != nil {
		stop()
		<-done
	}
	if b != nil {
		b.Shutdown()
	}
}

// LeaseSeconds is the whole number of seconds a Lease stores for d: rounded
// up, as this module's elector writes it.
func LeaseSeconds(d time.Duration) int64 {
	return int64(math.Ceil(d.Seconds()))
}

// ValidateDurations checks that the lease duration survives being stored in
// whole seconds: rounded up (this module's elector) and truncated (client-go's
// elector, which may share the Lease), it must still exceed renewDeadline,
// or a follower could take over while the leader still believes it leads.
// Errors name the field.
func ValidateDurations(leaseDuration, renewDeadline time.Duration) error {
	if leaseDuration < time.Second {
		return fmt.Errorf("LeaseDuration (%v) must be at least 1s: a Lease stores whole seconds", leaseDuration)
	}
	if s := LeaseSeconds(leaseDuration); s > math.MaxInt32 {
		return fmt.Errorf("LeaseDuration (%v) is too long for a Lease (at most %d seconds)", leaseDuration, math.MaxInt32)
	}
	if floor := leaseDuration.Truncate(time.Second); floor <= renewDeadline {
		return fmt.Errorf("LeaseDuration (%v) is stored in whole seconds and client-go reads it as %v, which must be greater than RenewDeadline (%v): use whole seconds", leaseDuration, floor, renewDeadline)
	}
	return nil
}

// ValidateDurations makes the Lock a lock.DurationRules: the elector
// applies ValidateDurations (the package function) to its durations, so a
// LeaseDuration a Lease cannot keep is refused by leaderelection.NewElector
// and Run, naming the field.
func (l *Lock) ValidateDurations(leaseDuration, renewDeadline, _ time.Duration) error {
	return ValidateDurations(leaseDuration, renewDeadline)
}

var _ lock.DurationRules = (*Lock)(nil)

// Changes signals soon after the Lease may have changed. The first
// subscriber starts one watch on this Lease; it stops when the last
// subscriber's context ends. A broken watch is re-established (listing again
// if its resourceVersion has expired), and signals once it is.
func (l *Lock) Changes(ctx context.Context) <-chan struct{} {
	ch := l.hub.Subscribe(ctx)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ch
	}
	l.subscribers++
	if l.subscribers == 1 && l.stopWatch == nil {
		wctx, cancel := context.WithCancel(context.Background())
		// A watch stopped a moment ago may not have marked itself
		// down yet (setLive ignores it from now on): this one is not up
		// until it has listed.
		l.stopWatch, l.watchDone, l.live = cancel, make(chan struct{}), false
		go l.watch(wctx, l.watchDone)
	}
	context.AfterFunc(ctx, func() {
		l.mu.Lock()
		l.subscribers--
		var stop context.CancelFunc
		if l.subscribers == 0 {
			stop, l.stopWatch = l.stopWatch, nil
		}
		l.mu.Unlock()
		if stop != nil {
			stop()
		}
	})
	return ch
}

// watch keeps a watch on the Lease until ctx ends, feeding snap.
func (l *Lock) watch(ctx context.Context, done chan struct{}) {
	defer close(done)
	defer l.setLive(done, false)
	selector := fields.OneTermEqualSelector("metadata.name", l.name).String()
	rv := ""
	missed := false // a list found a newer state than this lock knew
	backoff := newBackoff()
	for ctx.Err() == nil {
		if rv == "" {
			list, err := l.leases.List(ctx, metav1.ListOptions{FieldSelector: selector})
			if err != nil {
				if ctx.Err() == nil {
					l.log.V(2).Info("listing the lease failed; retrying", "err", err)
				}
				backoff.wait(ctx)
				continue
			}
			listRV, _ := parseRV(list.ResourceVersion)
			if len(list.Items) == 0 {
				missed = l.observe(nil, listRV) || missed
			} else {
				item := list.Items[0]
				itemRV, _ := parseRV(item.ResourceVersion)
				missed = l.observe(&item, itemRV) || missed
			}
			rv = list.ResourceVersion
		}
		w, err := l.leases.Watch(ctx, metav1.ListOptions{
			FieldSelector:       selector,
			ResourceVersion:     rv,
			AllowWatchBookmarks: true,
		})
		if err != nil {
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				rv = ""
			} else if ctx.Err() == nil {
				l.log.V(2).Info("watching the lease failed; retrying", "err", err)
			}
			backoff.wait(ctx)
			continue
		}
		l.setLive(done, true)
		// Changes made while no watch was established are either in the
		// list just read or replayed by a watch resumed from rv; signal
		// only for the former (the replay signals by itself).
		if missed {
			missed = false
			l.hub.Notify()
		}
		var events int
		rv, events = l.consume(ctx, w, rv)
		w.Stop()
		l.setLive(done, false)
		if events > 0 {
			backoff.reset()
		} else {
			backoff.wait(ctx)
		}
	}
}

// consume applies a watch's events until it ends and returns the
// resourceVersion to resume from ("" to list again) and the event count.
func (l *Lock) consume(ctx context.Context, w watch.Interface, rv string) (string, int) {
	n := 0
	for {
		var ev watch.Event
		select {
		case <-ctx.Done(): // not every watch.Interface ends with its context
			return rv, n
		case e, open := <-w.ResultChan():
			if !open {
				return rv, n
			}
			ev = e
		}
		n++
		switch ev.Type {
		case watch.Added, watch.Modified, watch.Deleted:
			lease, ok := ev.Object.(*coordinationv1.Lease)
			if !ok {
				continue
			}
			rv = lease.ResourceVersion
			v, _ := parseRV(lease.ResourceVersion)
			if ev.Type == watch.Deleted {
				l.observe(nil, v)
			} else {
				l.observe(lease, v)
			}
			l.hub.Notify()
		case watch.Bookmark:
			if obj, ok := ev.Object.(metav1.Object); ok {
				rv = obj.GetResourceVersion()
			}
		case watch.Error:
			err := apierrors.FromObject(ev.Object)
			if apierrors.IsResourceExpired(err) || apierrors.IsGone(err) {
				return "", n
			}
			l.log.V(2).Info("the lease watch ended with an error", "err", err)
			return rv, n
		}
	}
}

// setLive records whether the watch is established. When it goes down,
// subscribers are signalled so that they learn (through Watching) to poll
// until it is back. Only the current watch (done is its channel) speaks: a
// watch stopped when its last subscriber left may still be winding down
// while a new subscriber's watch is up, and must not mark that one down.
func (l *Lock) setLive(done chan struct{}, live bool) {
	l.mu.Lock()
	if l.watchDone != done {
		l.mu.Unlock()
		return
	}
	was := l.live
	l.live = live
	l.mu.Unlock()
	if was && !live {
		l.hub.Notify()
	}
}

// Watching reports whether the watch is established, so that changes are
// signalled (lock.WatchState). It is false while the watch is being
// re-established, and before the first subscriber.
func (l *Lock) Watching() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.live
}

// observe records a state of the Lease if it is at least as new as what
// this lock knows (lease == nil: absent), and reports whether it is newer.
func (l *Lock) observe(lease *coordinationv1.Lease, rv uint64) bool {
	if rv == 0 {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if rv < l.snap.rv {
		return false
	}
	newer := rv > l.snap.rv
	if lease != nil {
		lease = lease.DeepCopy()
	}
	l.snap = snapshot{lease: lease, rv: rv}
	return newer
}

// cached answers a Get from the watch when it is established and trusted.
func (l *Lock) cached() (snapshot, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.live || l.distrust || l.snap.rv == 0 {
		return snapshot{}, false
	}
	return l.snap, true
}

func parseRV(s string) (uint64, bool) {
	v, err := strconv.ParseUint(s, 10, 64)
	return v, err == nil
}

// leasesGetter is the client the inner LeaseLock uses: it answers Get from
// the watch and keeps snap up to date with every read and write.
type leasesGetter struct{ l *Lock }

func (g leasesGetter) Leases(string) coordinationv1client.LeaseInterface {
	return cachingLeases{LeaseInterface: g.l.leases, l: g.l}
}

type cachingLeases struct {
	coordinationv1client.LeaseInterface
	l *Lock
}

func (c cachingLeases) Get(ctx context.Context, name string, opts metav1.GetOptions) (*coordinationv1.Lease, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if s, ok := c.l.cached(); ok {
		if s.lease == nil {
			return nil, apierrors.NewNotFound(coordinationv1.Resource("leases"), name)
		}
		return s.lease.DeepCopy(), nil
	}
	lease, err := c.LeaseInterface.Get(ctx, name, opts)
	c.l.mu.Lock()
	if err == nil {
		c.l.distrust = false
	}
	c.l.mu.Unlock()
	if err == nil {
		v, _ := parseRV(lease.ResourceVersion)
		c.l.observe(lease, v)
	}
	return lease, err
}

func (c cachingLeases) Create(ctx context.Context, lease *coordinationv1.Lease, opts metav1.CreateOptions) (*coordinationv1.Lease, error) {
	out, err := c.LeaseInterface.Create(ctx, lease, opts)
	c.wrote(out, err)
	return out, err
}

func (c cachingLeases) Update(ctx context.Context, lease *coordinationv1.Lease, opts metav1.UpdateOptions) (*coordinationv1.Lease, error) {
	c.l.nudgeIfUnchanged(lease)
	out, err := c.LeaseInterface.Update(ctx, lease, opts)
	c.wrote(out, err)
	return out, err
}

// wrote records a write's result. A failed write (lost race, timeout) means
// the server may hold something newer than snap, so the next Get asks it.
func (c cachingLeases) wrote(out *coordinationv1.Lease, err error) {
	if err != nil {
		c.l.mu.Lock()
		c.l.distrust = true
		c.l.mu.Unlock()
		return
	}
	v, _ := parseRV(out.ResourceVersion)
	c.l.observe(out, v)
}

// nudgeIfUnchanged moves RenewTime 1µs forward when lease's spec is exactly
// the one stored at its resourceVersion. The API server skips a write that
// changes nothing and keeps the resourceVersion, so such a renewal would
// neither be seen by followers nor invalidate their reads; every successful
// Update must produce a new version.
func (l *Lock) nudgeIfUnchanged(lease *coordinationv1.Lease) {
	rv, _ := parseRV(lease.ResourceVersion)
	l.mu.Lock()
	prev := l.snap
	l.mu.Unlock()
	if prev.lease == nil || prev.rv != rv || lease.Spec.RenewTime == nil {
		return
	}
	before, err1 := json.Marshal(prev.lease.Spec)
	after, err2 := json.Marshal(lease.Spec)
	if err1 != nil || err2 != nil || !bytes.Equal(before, after) {
		return
	}
	next := metav1.NewMicroTime(lease.Spec.RenewTime.Add(time.Microsecond))
	lease.Spec.RenewTime = &next
}

// eventSink is the EventRecorder the inner LeaseLock uses: the configured
// recorder, or one started on first use.
type eventSink struct{ l *Lock }

func (e eventSink) Eventf(obj runtime.Object, eventType, reason, message string, args ...interface{}) {
	r := e.l.eventRecorder()
	if r != nil {
		r.Eventf(obj, eventType, reason, message, args...)
	}
}

func (l *Lock) eventRecorder() resourcelock.EventRecorder {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.recorder != nil || l.disableEvents || l.closed {
		return l.recorder
	}
	l.broadcaster = record.NewBroadcaster()
	l.broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: l.client.CoreV1().Events(l.inner.LeaseMeta.Namespace)})
	l.recorder = l.broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "leaderelection"})
	return l.recorder
}

// backoff spaces out attempts to re-establish the watch: 100ms doubling to
// 2s, with jitter.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{} }

func (b *backoff) reset() { b.d = 0 }

func (b *backoff) wait(ctx context.Context) {
	b.d = min(max(2*b.d, 100*time.Millisecond), 2*time.Second)
	t := time.NewTimer(wait.Jitter(b.d, 0.2))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
