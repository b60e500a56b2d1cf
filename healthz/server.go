// Package healthz serves an elector's health on HTTP: /healthz, /livez and
// /readyz (each with per-check paths, built on
// k8s.io/apiserver/pkg/server/healthz), /metrics (Prometheus), /status
// (JSON) and /leader (200 on the leader, 503 on the others).
//
// The watchdog check fails when the elector's loop, leader or follower, has
// not come round within its own longest wait plus a tolerance, or a user
// callback has outlived its bound: the process is wedged, and a liveness
// probe on /livez gets it restarted. A store that is down is not a wedge:
// the loop keeps running, /livez stays healthy, and /readyz (the "store"
// check) and /status report the failure. The user's liveness check runs on
// every replica, leader or not. A lock that can be unfit to take part for a
// while (lock.ReadinessChecker: a gossip voter recovering its record) adds
// its own check to /readyz.
package healthz

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/apiserver/pkg/server/healthz"
	"k8s.io/utils/clock"

	"github.com/b3df926d/leaderelection/lock"
)

// Options configure a Server.
type Options struct {
	// Addr is the listen address, host:port ("127.0.0.1:0" picks a port).
	Addr string
	// Source is the elector whose state is served.
	Source Source
	// Liveness, if set, is the user's check, served as "liveness" on
	// /healthz and /livez on every replica. It is not on /readyz: a
	// liveness probe that fails restarts the process.
	Liveness func(*http.Request) error
	// Readiness, if set, is the user's check, served as "readiness" on
	// /readyz only, on every replica.
	Readiness func(*http.Request) error
	// LockReadiness, if set, is the lock's own readiness (a gossip voter
	// recovering its record), served on /readyz only under its
	// ReadinessName (/readyz/gossip), on every replica.
	LockReadiness lock.ReadinessChecker
	// Standby, if set, reports whether the application's warm standby
	// (leaderelection.Option.Standby: informers, caches) is ready, served
	// as "standby" on /readyz only, on every replica.
	Standby func() error
	// LeaderOnlyReady adds the "leader" check to /readyz: it fails on every
	// replica but the leader, so a Kubernetes Service whose readiness probe
	// is /readyz routes only to the leader (active/passive). Liveness is
	// unaffected: followers are healthy, just not ready.
	LeaderOnlyReady bool
	// Handlers are the application's own handlers, mounted on the health
	// server by pattern (as http.ServeMux.Handle; for example "/work").
	// They may not replace the server's own paths.
	Handlers map[string]http.Handler
	// WatchdogTolerance is how long past its due time the watchdog lets
	// the elector's loop, or a callback, be late before failing (default
	// 10s, as client-go's healthz adaptor is usually configured).
	WatchdogTolerance time.Duration
	// Registry receives the metrics (default: a new registry with the Go
	// and process collectors). /metrics serves it.
	Registry *prometheus.Registry
	// Metrics, if set, are the renewal metrics the elector observes
	// (NewRenewMetrics, given to leaderelection.Config.Metrics too); New
	// registers them on Registry. Nil: New makes them (Server.Metrics).
	Metrics *Metrics
	// Clock is for tests (default: the real clock).
	Clock clock.PassiveClock
}

// Server is the health server. Create it with New (which binds the port) and
// run it with Serve.
type Server struct {
	ln      net.Listener
	srv     *http.Server
	metrics *Metrics
}

// New binds opts.Addr and prepares the handlers. A port already in use is
// an error here, not later in a goroutine.
func New(opts Options) (*Server, error) {
	if opts.Source == nil {
		return nil, errors.New("healthz: Source must not be nil")
	}
	if opts.WatchdogTolerance <= 0 {
		opts.WatchdogTolerance = 10 * time.Second
	}
	if opts.Clock == nil {
		opts.Clock = clock.RealClock{}
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m := opts.Metrics
	if m == nil {
		m = NewRenewMetrics()
	}
	if err := m.register(reg, opts.Source); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("health server: listen on %q: %w", opts.Addr, err)
	}

	checks := []healthz.HealthChecker{healthz.PingHealthz, Watchdog(opts.Source, opts.WatchdogTolerance, opts.Clock)}
	if opts.Liveness != nil {
		checks = append(checks, healthz.NamedCheck("liveness", opts.Liveness))
	}
	mux := http.NewServeMux()
	healthz.InstallHandler(reasonMux{mux, "/healthz"}, withReasons(checks)...)
	healthz.InstallLivezHandler(reasonMux{mux, "/livez"}, withReasons(checks)...)
	ready := append(append([]healthz.HealthChecker{}, checks[:2]...), StoreCheck(opts.Source))
	if opts.Readiness != nil {
		ready = append(ready, healthz.NamedCheck("readiness", opts.Readiness))
	}
	if opts.LockReadiness != nil {
		lr := opts.LockReadiness
		ready = append(ready, healthz.NamedCheck(lr.ReadinessName(), func(*http.Request) error { return lr.Ready() }))
	}
	if opts.Standby != nil {
		warm := opts.Standby
		ready = append(ready, healthz.NamedCheck("standby", func(*http.Request) error { return warm() }))
	}
	if opts.LeaderOnlyReady {
		ready = append(ready, LeaderCheck(opts.Source))
	}
	healthz.InstallReadyzHandler(reasonMux{mux, "/readyz"}, withReasons(ready)...)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(opts.Source.Status())
	})
	mux.HandleFunc("/leader", func(w http.ResponseWriter, _ *http.Request) {
		serveLeader(w, opts.Source.Status())
	})
	for pattern, h := range opts.Handlers {
		if err := mount(mux, pattern, h); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return &Server{
		ln:      ln,
		srv:     &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		metrics: m,
	}, nil
}

// mount adds one of the application's handlers, turning ServeMux's panic on
// a conflicting pattern into an error naming it.
func mount(mux *http.ServeMux, pattern string, h http.Handler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("healthz: Options.Handlers[%q]: %v", pattern, r)
		}
	}()
	if h == nil {
		return fmt.Errorf("healthz: Options.Handlers[%q] is nil", pattern)
	}
	mux.Handle(pattern, h)
	return nil
}

// LeaderCheck returns the "leader" readiness check: it fails on a replica
// that does not lead.
func LeaderCheck(src Source) healthz.HealthChecker {
	return healthz.NamedCheck("leader", func(*http.Request) error {
		st := src.Status()
		if st.Leading {
			return nil
		}
		return fmt.Errorf("%s does not lead %s (leader: %q)", st.Identity, st.Lock, st.Leader)
	})
}

// Leader is the body of /leader: this replica's identity, whether it leads,
// the observed leader and the lock's current term (the leader's fencing
// token).
type Leader struct {
	Identity string `json:"identity"`
	Leading  bool   `json:"leading"`
	Leader   string `json:"leader"`
	Term     int64  `json:"term"`
}

// serveLeader answers "am I leader" for programs that cannot link the
// library: 200 on the leader, 503 elsewhere, the same JSON body on both.
func serveLeader(w http.ResponseWriter, st Status) {
	body := Leader{Identity: st.Identity, Leading: st.Leading, Leader: st.Leader, Term: st.Transitions}
	if st.Leading {
		body.Term = st.Term
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if !st.Leading {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(body)
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Metrics returns the renewal metrics, to pass to the elector's Config.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Serve serves until ctx ends, then shuts down gracefully (waiting up to 5s
// for requests in flight). It returns nil after a clean shutdown.
func (s *Server) Serve(ctx context.Context) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(s.ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("health server on %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(shutdownCtx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}

// Close stops a server that was never served.
func (s *Server) Close() error { return s.ln.Close() }

// Watchdog returns the watchdog check ("leaderElection", as client-go
// names it). It fails when src's loop has not come round by its
// HeartbeatDue plus tolerance, or a callback is still running tolerance
// after its Due: on a leader and on a follower alike.
func Watchdog(src Source, tolerance time.Duration, clk clock.PassiveClock) healthz.HealthChecker {
	return healthz.NamedCheck("leaderElection", func(*http.Request) error {
		st := src.Status()
		now := clk.Now()
		var errs []error
		if !st.HeartbeatDue.IsZero() && now.After(st.HeartbeatDue.Add(tolerance)) {
			errs = append(errs, fmt.Errorf("the elector of %s (%s) is wedged: its loop last came round %v ago and was due %v ago (tolerance %v)",
				st.Lock, st.Identity, now.Sub(st.Heartbeat).Round(time.Millisecond), now.Sub(st.HeartbeatDue).Round(time.Millisecond), tolerance))
		}
		for _, c := range st.Callbacks {
			if !c.Due.IsZero() && now.After(c.Due.Add(tolerance)) {
				errs = append(errs, fmt.Errorf("%s of %s (%s) has been running for %v, %v past its deadline (tolerance %v)",
					c.Name, st.Lock, st.Identity, now.Sub(c.Since).Round(time.Millisecond), now.Sub(c.Due).Round(time.Millisecond), tolerance))
			}
		}
		return errors.Join(errs...)
	})
}

// StoreCheck returns the "store" readiness check: it fails while src's
// last store call failed. It is on /readyz only: a store outage makes no
// replica a better leader, and restarting would not help.
func StoreCheck(src Source) healthz.HealthChecker {
	return healthz.NamedCheck("store", func(*http.Request) error {
		st := src.Status()
		if st.StoreError == "" {
			return nil
		}
		return fmt.Errorf("the store of %s has failed since %s: %s", st.Lock, st.StoreErrorSince.Format(time.RFC3339), st.StoreError)
	})
}
