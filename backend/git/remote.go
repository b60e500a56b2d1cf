package git

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"github.com/go-git/go-git/v5/storage/memory"
)

var (
	// errNoBranch: the lock branch does not exist (or the repository is
	// empty).
	errNoBranch = errors.New("no such branch")
	// errCorruptCommit: the branch's commit does not hold the record file.
	errCorruptCommit = errors.New("commit does not hold the record")
	// errRejected: the server answered the push, refusing to move the
	// branch. Why is decided from the branch's state afterwards (see
	// Lock.write), never from the wording of the server's reason, which
	// changes between git versions ("failed to update ref", "failed to
	// lock" before 2.51; "incorrect old value provided", "reference already
	// exists" since).
	errRejected = errors.New("push rejected")
)

// maxRecordSize bounds what a read accepts as the record file.
const maxRecordSize = 1 << 20

// remote talks to one repository with go-git's transports, without any local
// repository: reads go into a throw-away in-memory store and writes send a
// pack built in memory.
type remote struct {
	ep      *transport.Endpoint
	auth    transport.AuthMethod
	tr      transport.Transport
	display string   // the URL without credentials
	secrets []string // credentials that must not appear in errors
}

// secrets returns the non-trivial values among vals.
func secrets(vals ...string) []string {
	var out []string
	for _, v := range vals {
		if len(v) >= 3 {
			out = append(out, v)
		}
	}
	return out
}

// scrub hides any credential that err's text would show, keeping the
// error chain for errors.Is and lock.IsConflict.
func (r *remote) scrub(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	for _, s := range r.secrets {
		msg = strings.ReplaceAll(msg, s, "***")
	}
	if msg == err.Error() {
		return err
	}
	return &redacted{msg: msg, err: err}
}

func newRemote(cfg Options) (*remote, error) {
	ep, err := transport.NewEndpoint(cfg.URL)
	if err != nil {
		// The URL may hold a password: do not quote it.
		return nil, fmt.Errorf("git lock: URL does not parse as a git URL: %w", redact(err, cfg.URL))
	}
	r := &remote{ep: ep, display: display(ep)}
	proto := strings.ToLower(ep.Protocol)
	isHTTP, isSSH := proto == "http" || proto == "https", proto == "ssh"
	// Credentials in the URL move into the auth method, so that no request
	// URL, and so no error quoting one, carries them.
	urlUser, urlPassword := ep.User, ep.Password
	ep.Password = ""
	if isHTTP {
		ep.User = ""
	}
	r.secrets = secrets(urlPassword, cfg.Password, cfg.Token, cfg.SSHKeyPassphrase)
	if isHTTP && urlUser != "" && urlPassword == "" && cfg.Password == "" && cfg.Token == "" {
		r.secrets = append(r.secrets, secrets(urlUser)...) // a token passed as the user name
	}
	switch {
	case cfg.Token != "" && !isHTTP:
		return nil, fmt.Errorf("git lock: Token is for http(s) URLs, not %s", r.display)
	case cfg.Password != "" && !isHTTP:
		return nil, fmt.Errorf("git lock: Password is for http(s) URLs, not %s", r.display)
	case cfg.SSHKeyFile != "" && !isSSH:
		return nil, fmt.Errorf("git lock: SSHKeyFile is for ssh URLs, not %s", r.display)
	case cfg.Token != "" && cfg.Password != "":
		return nil, errors.New("git lock: set Token or Password, not both")
	}
	switch {
	case cfg.Auth != nil:
		r.auth = cfg.Auth
	case isHTTP && cfg.Token != "":
		r.auth = &githttp.TokenAuth{Token: cfg.Token}
	case isHTTP && (cfg.Username != "" || cfg.Password != ""):
		r.auth = &githttp.BasicAuth{Username: cfg.Username, Password: cfg.Password}
	case isHTTP && (urlUser != "" || urlPassword != ""):
		r.auth = &githttp.BasicAuth{Username: urlUser, Password: urlPassword}
	case isSSH:
		if r.auth, err = sshAuth(cfg, ep); err != nil {
			return nil, err
		}
	}
	if isHTTP {
		r.tr = githttp.NewClient(cfg.HTTPClient)
	} else if r.tr, err = client.NewClient(ep); err != nil {
		return nil, fmt.Errorf("git lock: %s: %w", r.display, err)
	}
	return r, nil
}

func sshAuth(cfg Options, ep *transport.Endpoint) (transport.AuthMethod, error) {
	user := cfg.Username
	if user == "" {
		user = ep.User
	}
	if user == "" {
		user = "git"
	}
	var helper gitssh.HostKeyCallbackHelper
	if len(cfg.SSHKnownHosts) > 0 {
		cb, err := gitssh.NewKnownHostsCallback(cfg.SSHKnownHosts...)
		if err != nil {
			return nil, fmt.Errorf("git lock: SSHKnownHosts: %w", err)
		}
		helper.HostKeyCallback = cb
	}
	if cfg.SSHKeyFile != "" {
		auth, err := gitssh.NewPublicKeysFromFile(user, cfg.SSHKeyFile, cfg.SSHKeyPassphrase)
		if err != nil {
			return nil, fmt.Errorf("git lock: SSHKeyFile %s: %w", cfg.SSHKeyFile, err)
		}
		auth.HostKeyCallbackHelper = helper
		return auth, nil
	}
	auth, err := gitssh.NewSSHAgentAuth(user)
	if err != nil {
		return nil, fmt.Errorf("git lock: ssh URL without SSHKeyFile needs an ssh-agent ($SSH_AUTH_SOCK): %w", err)
	}
	auth.HostKeyCallbackHelper = helper
	return auth, nil
}

// display renders the endpoint without secrets: no password, and for http(s)
// no user either (tokens are often passed as the user name).
func display(ep *transport.Endpoint) string {
	d := *ep
	d.Password = ""
	if p := strings.ToLower(d.Protocol); p == "http" || p == "https" {
		d.User = ""
	}
	return d.String()
}

// redact replaces url in err's text, so a parse error cannot leak a
// password; the error chain is kept.
func redact(err error, url string) error {
	if url == "" || !strings.Contains(err.Error(), url) {
		return err
	}
	return &redacted{msg: strings.ReplaceAll(err.Error(), url, "<url>"), err: err}
}

type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

// open makes a session, giving up when ctx ends. go-git dials git:// without
// a context; if that outlives ctx, the session is closed once it is made.
func open[S io.Closer](ctx context.Context, mk func() (S, error)) (S, error) {
	var zero S
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	type result struct {
		s   S
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := mk()
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-ctx.Done():
		go func() {
			if r := <-ch; r.err == nil {
				r.s.Close()
			}
		}()
		return zero, ctx.Err()
	}
}

// refs lists sess's advertised references, giving up when ctx ends. When
// the server closes the connection without a word (a git daemon
// restarting, a dropped connection), go-git waits up to ten seconds for an
// error line, ignoring ctx (transport/internal/common, checkNotFoundError):
// a whole RenewDeadline and more of a candidate's loop. If refs gives up,
// it returns abandoned: the call goes on, and closes sess once it has
// returned (closing it meanwhile would race with it), so the caller must
// not close it.
func refs(ctx context.Context, sess interface {
	AdvertisedReferencesContext(context.Context) (*packp.AdvRefs, error)
	io.Closer
}) (ar *packp.AdvRefs, abandoned bool, err error) {
	type result struct {
		ar  *packp.AdvRefs
		err error
	}
	ch := make(chan result, 1)
	go func() {
		ar, err := sess.AdvertisedReferencesContext(ctx)
		ch <- result{ar, err}
	}()
	select {
	case r := <-ch:
		return r.ar, false, r.err
	case <-ctx.Done():
		go func() {
			<-ch
			sess.Close()
		}()
		return nil, true, fmt.Errorf("listing references: %w", ctx.Err())
	}
}

// read returns the branch's commit and the record file in it, and whether
// the server advertises the marker ref (see Lock.marker). If the commit is
// known (the caller already holds its record), it fetches nothing and
// returns a nil raw.
func (r *remote) read(ctx context.Context, branch, marker plumbing.ReferenceName, file string, known plumbing.Hash) (head plumbing.Hash, raw []byte, marked bool, err error) {
	sess, err := open(ctx, func() (transport.UploadPackSession, error) { return r.tr.NewUploadPackSession(r.ep, r.auth) })
	if err != nil {
		return head, nil, false, err
	}
	ar, head, abandoned, err := branchHead(ctx, sess, branch)
	if !abandoned {
		defer sess.Close()
	}
	if ar != nil {
		_, marked = ar.References[marker.String()]
	}
	if err != nil {
		return head, nil, marked, err
	}
	raw, err = fetch(ctx, sess, ar, head, file, known)
	return head, raw, marked, err
}

// fetch returns the record file in commit head, fetched in sess, or nil
// without fetching if head is the known commit.
func fetch(ctx context.Context, sess transport.UploadPackSession, ar *packp.AdvRefs, head plumbing.Hash, file string, known plumbing.Hash) ([]byte, error) {
	if head == known {
		return nil, nil
	}
	req := packp.NewUploadPackRequestFromCapabilities(ar.Capabilities)
	req.Wants = []plumbing.Hash{head}
	req.Depth = packp.DepthCommits(1)
	if err := req.Capabilities.Set(capability.Shallow); err != nil {
		return nil, err
	}
	if ar.Capabilities.Supports(capability.NoProgress) {
		_ = req.Capabilities.Set(capability.NoProgress)
	}
	resp, err := sess.UploadPack(ctx, req)
	if err != nil {
		if strings.Contains(err.Error(), "not our ref") {
			return nil, fmt.Errorf("%w: %w", errMoved, err)
		}
		return nil, fmt.Errorf("fetch %s: %w", head, err)
	}
	defer resp.Close()
	var pack io.Reader = resp
	if req.Capabilities.Supports(capability.Sideband64k) {
		pack = sideband.NewDemuxer(sideband.Sideband64k, resp)
	} else if req.Capabilities.Supports(capability.Sideband) {
		pack = sideband.NewDemuxer(sideband.Sideband, resp)
	}
	st := memory.NewStorage()
	if err := packfile.UpdateObjectStorage(st, pack); err != nil {
		return nil, fmt.Errorf("fetch %s: %w", head, err)
	}
	return recordFile(st, head, file)
}

// branchHead lists the session's advertised references and returns the
// commit branch points at, or errNoBranch. abandoned: as for refs.
func branchHead(ctx context.Context, sess transport.UploadPackSession, branch plumbing.ReferenceName) (*packp.AdvRefs, plumbing.Hash, bool, error) {
	ar, abandoned, err := refs(ctx, sess)
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return nil, plumbing.ZeroHash, abandoned, errNoBranch
	}
	if err != nil {
		return nil, plumbing.ZeroHash, abandoned, err
	}
	head, ok := ar.References[branch.String()]
	if !ok {
		return ar, plumbing.ZeroHash, false, errNoBranch
	}
	return ar, head, false, nil
}

// head returns the commit branch points at on the server now, or
// errNoBranch. It fetches nothing.
func (r *remote) head(ctx context.Context, branch plumbing.ReferenceName) (plumbing.Hash, error) {
	sess, err := open(ctx, func() (transport.UploadPackSession, error) { return r.tr.NewUploadPackSession(r.ep, r.auth) })
	if err != nil {
		return plumbing.ZeroHash, err
	}
	_, head, abandoned, err := branchHead(ctx, sess, branch)
	if !abandoned {
		sess.Close()
	}
	return head, err
}

// push sends c and asks the server to move branch from old (zero: the branch
// must not exist) to c. The server's receive-pack checks old under its ref
// lock; that check is the compare-and-swap.
func (r *remote) push(ctx context.Context, branch plumbing.ReferenceName, old plumbing.Hash, c *commit) error {
	sess, err := open(ctx, func() (transport.ReceivePackSession, error) { return r.tr.NewReceivePackSession(r.ep, r.auth) })
	if err != nil {
		return err
	}
	ar, abandoned, err := refs(ctx, sess)
	if !abandoned {
		defer sess.Close()
	}
	if err != nil {
		return err
	}
	if !ar.Capabilities.Supports(capability.ReportStatus) {
		return errors.New("server does not report push status (report-status); cannot tell a lost race")
	}
	req := packp.NewReferenceUpdateRequestFromCapabilities(ar.Capabilities)
	req.Commands = []*packp.Command{{Name: branch, Old: old, New: c.hash}}
	req.Packfile = io.NopCloser(bytes.NewReader(c.pack))
	report, err := sess.ReceivePack(ctx, req)
	if err == nil {
		return nil
	}
	if report != nil {
		for _, cs := range report.CommandStatuses {
			if cs.Status != "ok" {
				return &rejection{status: cs.Status}
			}
		}
	}
	return err
}

// rejection is the server's refusal of a push, with its reason as the
// server worded it: for people, not for deciding what happened.
type rejection struct{ status string }

func (r *rejection) Error() string {
	msg := "server refused the push: " + r.status
	if strings.Contains(r.status, "non-fast-forward") {
		msg += " (receive.denyNonFastForwards, or branch protection: every write is an orphan commit, so the lock branch must allow force pushes)"
	}
	return msg
}

func (r *rejection) Is(target error) bool { return target == errRejected }
