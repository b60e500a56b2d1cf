package healthz

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"k8s.io/apiserver/pkg/server/healthz"
)

// The aggregate endpoints (/healthz, /livez, /readyz) of
// k8s.io/apiserver's healthz list each check but withhold why one failed
// ("[-]store failed: reason withheld"); only the per-check paths
// (/readyz/store) say why. An operator asking /readyz?verbose wants the
// reason where the check is named, so the aggregate endpoints here put
// each failed check's error in place of "reason withheld" when the
// request asks for ?verbose. Without it they answer as the apiserver's do.

// reasonsKey is the request context key of a request's *reasons.
type reasonsKey struct{}

// reasons collects the errors of the checks that failed in one request.
type reasons struct {
	mu   sync.Mutex
	errs map[string]error
}

// withReasons wraps checks so that each one that fails records its error
// in the request's reasons, if the request carries them.
func withReasons(checks []healthz.HealthChecker) []healthz.HealthChecker {
	out := make([]healthz.HealthChecker, len(checks))
	for i, c := range checks {
		out[i] = healthz.NamedCheck(c.Name(), func(r *http.Request) error {
			err := c.Check(r)
			if rs, ok := r.Context().Value(reasonsKey{}).(*reasons); ok && err != nil {
				rs.mu.Lock()
				rs.errs[c.Name()] = err
				rs.mu.Unlock()
			}
			return err
		})
	}
	return out
}

// reasonMux installs handlers on mux, serving the aggregate endpoint root
// through verboseReasons.
type reasonMux struct {
	mux  *http.ServeMux
	root string
}

func (m reasonMux) Handle(pattern string, h http.Handler) {
	if pattern == m.root {
		h = verboseReasons(h)
	}
	m.mux.Handle(pattern, h)
}

// verboseReasons serves h; for a ?verbose request, each failed check's
// line names its error instead of "reason withheld".
func verboseReasons(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := r.URL.Query()["verbose"]; !ok {
			h.ServeHTTP(w, r)
			return
		}
		rs := &reasons{errs: map[string]error{}}
		rec := &recorder{header: http.Header{}, code: http.StatusOK}
		h.ServeHTTP(rec, r.WithContext(context.WithValue(r.Context(), reasonsKey{}, rs)))
		body := rec.body.String()
		rs.mu.Lock()
		for name, err := range rs.errs {
			reason := strings.ReplaceAll(err.Error(), "\n", "; ")
			body = strings.Replace(body, fmt.Sprintf("[-]%s failed: reason withheld", name), fmt.Sprintf("[-]%s failed: %s", name, reason), 1)
		}
		rs.mu.Unlock()
		for k, v := range rec.header {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(rec.code)
		_, _ = w.Write([]byte(body))
	})
}

// recorder keeps a response to rewrite it.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) Write(b []byte) (int, error) { return r.body.Write(b) }
func (r *recorder) WriteHeader(code int)        { r.code = code }
