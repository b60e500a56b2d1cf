package gate

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"
)

// causeType marks the API status of a refused write (see IsRefused).
const causeType metav1.CauseType = "LeaderElectionGateClosed"

// Config returns a copy of cfg whose mutating requests (POST, PUT, PATCH,
// DELETE) pass only while g is open: a closed gate answers them itself,
// without sending anything, with a 503 ServiceUnavailable API status
// (client-go does not retry it: there is no Retry-After) that IsRefused
// recognises; and when the gate closes, the requests in flight are
// cancelled. Reads (GET, HEAD, OPTIONS: lists and watches too) always pass,
// so informers and caches keep working on a standby.
//
// The gate wraps cfg's transport (rest.Config.Wrap), outside any wrapper
// cfg already has, so it also applies over a custom Transport. A cfg that
// went through Config already (of this gate or another: its
// WrapTransport holds a gate, found through wrappers that expose what
// they wrap, as client-go's do) is an error naming WrapTransport: its
// writes would need both gates open. Gate the ungated config once.
func (g *Gate) Config(cfg *rest.Config) (*rest.Config, error) {
	if g == nil {
		return nil, errors.New("gate.Config: the gate is nil")
	}
	if cfg == nil {
		return nil, errors.New("gate.Config: the rest.Config is nil")
	}
	if cfg.WrapTransport != nil && Holds(cfg.WrapTransport(probe{})) {
		return nil, errors.New("gate.Config: rest.Config.WrapTransport already holds a write gate (the config went through Gate.Config before): writes would pass only while both gates are open; gate the ungated config, once")
	}
	c := rest.CopyConfig(cfg)
	c.Wrap(func(next http.RoundTripper) http.RoundTripper { return &roundTripper{g: g, next: next} })
	return c, nil
}

// IsRefused reports whether err is a write g refused or cancelled: an
// error wrapping ErrClosed, or the API status a gated rest.Config answers
// with.
func IsRefused(err error) bool {
	if errors.Is(err, ErrClosed) {
		return true
	}
	var s apierrors.APIStatus
	if !errors.As(err, &s) {
		return false
	}
	if d := s.Status().Details; d != nil {
		for _, c := range d.Causes {
			if c.Type == causeType {
				return true
			}
		}
	}
	return false
}

type roundTripper struct {
	g    *Gate
	next http.RoundTripper
}

// WrappedRoundTripper is what the gate wraps (utilnet.RoundTripperWrapper).
func (rt *roundTripper) WrappedRoundTripper() http.RoundTripper { return rt.next }

// probe is the transport Config hands an existing WrapTransport to look
// for a gate in what it builds; it is never sent a request.
type probe struct{}

func (probe) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("gate: the probe transport sends nothing")
}

// Holds reports whether rt passes its requests through a write gate: it
// is, or wraps (through wrappers that expose what they wrap, as
// client-go's do), the transport of a config that went through
// Config. A lock's own client must not: its writes would be refused
// while the gate is closed, as it is until this process leads, so the
// process could never lead (backend/k8s.New refuses such a client).
func Holds(rt http.RoundTripper) bool {
	for rt != nil {
		if _, ok := rt.(*roundTripper); ok {
			return true
		}
		w, ok := rt.(utilnet.RoundTripperWrapper)
		if !ok {
			return false
		}
		rt = w.WrappedRoundTripper()
	}
	return false
}

// mutating reports whether method changes state on the API server.
func mutating(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

func (rt *roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if !mutating(req.Method) {
		return rt.next.RoundTrip(req)
	}
	ctx, _, release, err := rt.g.bind(req.Context())
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // a RoundTripper closes the body, even on error
		}
		return refusal(req), nil
	}
	resp, err := rt.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		return nil, release(err)
	}
	resp.Body = &releasingBody{ReadCloser: resp.Body, release: release}
	return resp, nil
}

// releasingBody releases the request's gate watch when the response body
// is closed (the request's context must live until then). A read that
// fails because the gate closed meanwhile (the response was cut off)
// returns an error wrapping ErrClosed, so that IsRefused recognises it
// through client-go's "reading response body" error too.
type releasingBody struct {
	io.ReadCloser
	release func(error) error
}

func (b *releasingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = b.release(err)
	}
	return n, err
}

func (b *releasingBody) Close() error {
	err := b.ReadCloser.Close()
	_ = b.release(nil)
	return err
}

// refusal is the response to a mutating request while the gate is closed:
// an API status, as the server would send it, so that client-go returns a
// StatusError.
func refusal(req *http.Request) *http.Response {
	st := metav1.Status{
		TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status:   metav1.StatusFailure,
		Code:     http.StatusServiceUnavailable,
		Reason:   metav1.StatusReasonServiceUnavailable,
		Message:  fmt.Sprintf("%s %s: %v", req.Method, req.URL.Path, ErrClosed),
		Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{
			Type:    causeType,
			Message: ErrClosed.Error(),
		}}},
	}
	body, _ := json.Marshal(st) // a fixed, encodable struct
	return &http.Response{
		Status:        "503 Service Unavailable",
		StatusCode:    http.StatusServiceUnavailable,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": []string{"application/json"}},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}
