package leaderelection

import (
	"context"
	"errors"
	"github.com/b3df926d/leaderelection/internal/testserver"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/b3df926d/leaderelection/backend/file"
	"github.com/b3df926d/leaderelection/lock"
	"github.com/b3df926d/leaderelection/lock/locktest"
)

func noop(context.Context) {}

func TestOptionValidateNamesEveryBadField(t *testing.T) {
	t.Setenv("POD_NAME", "")
	mem := locktest.NewMemoryStore("v")
	good := func() Option { return Option{Lock: mem.Lock("a"), ID: "a", Run: noop} }
	if err := good().Validate(); err != nil {
		t.Fatalf("valid options rejected: %v", err)
	}
	cases := []struct {
		name string
		mod  func(*Option)
		want []string
	}{
		{"no run", func(o *Option) { o.Run = nil }, []string{"Run must not be nil"}},
		{"lock without identity", func(o *Option) { o.ID = ""; o.Lock = mem.Lock("") }, []string{"ID is empty and so is Lock's identity"}},
		{"no lock nor client", func(o *Option) { o.Lock = nil }, []string{"Option.Lock and Option.KubeClient are both nil", "LeaseLockName", "LeaseLockNamespace"}},
		{"unsupported resource lock", func(o *Option) {
			o.Lock = nil
			o.KubeClient = fake.NewClientset()
			o.ResourceLock = "configmaps"
			o.LeaseLockName = "l"
			o.LeaseLockNamespace = "ns"
		}, []string{`ResourceLock "configmaps"`}},
		{"port too large", func(o *Option) { o.Port = 70000 }, []string{"Port 70000 is out of range"}},
		{"port negative", func(o *Option) { o.Port = -5 }, []string{"Port -5 is out of range"}},
		{"negative lease", func(o *Option) { o.LeaseDuration = -time.Second }, []string{"LeaseDuration (-1s, --leader-elect-lease-duration) must be positive"}},
		{"lease not above renew", func(o *Option) { o.LeaseDuration = 10 * time.Second }, []string{"LeaseDuration (10s, --leader-elect-lease-duration) must be greater than RenewDeadline (10s, --leader-elect-renew-deadline): lower the renew deadline below 10s"}},
		{"negative retry", func(o *Option) { o.RetryPeriod = -time.Second }, []string{"RetryPeriod (-1s, --leader-elect-retry-period) must be positive"}},
		{"retry below 1s", func(o *Option) { o.RetryPeriod = 500 * time.Millisecond }, []string{"RetryPeriod (500ms, --leader-elect-retry-period) must be at least 1s (client-go allows less"}},
		{"retry too close to renew", func(o *Option) { o.RetryPeriod = 9 * time.Second }, []string{"--leader-elect-retry-period ×1.2): lower the retry period below 8.333s, or raise the renew deadline above 10.8s"}},
		{"ID differs from lock", func(o *Option) { o.ID = "b" }, []string{`ID "b" differs from the identity "a" of Lock memory://v`, "leave ID empty"}},
		{"several at once", func(o *Option) { o.Run = nil; o.Port = 70000; o.RenewDeadline = 20 * time.Second }, []string{"Run", "Port", "RenewDeadline"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o := good()
			tc.mod(&o)
			err := o.Validate()
			if err == nil {
				t.Fatal("Validate accepted bad options")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q; want it to mention %q", err, w)
				}
			}
			if rerr := Run(context.Background(), o); rerr == nil || !strings.Contains(rerr.Error(), "invalid options") {
				t.Errorf("Run with bad options = %v", rerr)
			}
		})
	}
}

func TestIDDefaultsFromPodName(t *testing.T) {
	t.Setenv("POD_NAME", "pod-7")
	client := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := make(chan int64, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- Run(ctx, Option{
			KubeClient: client, LeaseLockName: "lk", LeaseLockNamespace: "ns", Port: NoHealthServer,
			// A new Lease gets its first leader when its first claim has
			// stood RenewDeadline + max(LeaseDuration, 2.2 × RetryPeriod):
			// keep that short.
			LeaseDuration: 2 * time.Second, RenewDeadline: 1500 * time.Millisecond, RetryPeriod: time.Second,
			Run: func(ctx context.Context) { term, _ := TermFrom(ctx); started <- term; <-ctx.Done() },
		})
	}()
	select {
	case <-started:
	case err := <-errc:
		t.Fatalf("Run returned %v before leading", err)
	case <-time.After(testTimeout):
		t.Fatal("never led")
	}
	lease, err := client.CoordinationV1().Leases("ns").Get(ctx, "lk", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if lease.Spec.HolderIdentity == nil || *lease.Spec.HolderIdentity != "pod-7" {
		t.Fatalf("lease holder = %v, want pod-7 from POD_NAME", lease.Spec.HolderIdentity)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run after cancel = %v", err)
	}
}

// Without POD_NAME, the Lease's holder is lock.DefaultIdentity()
// (<hostname>_<pid>), not an error.
func TestIDDefaultsToHostAndPidWithoutPodName(t *testing.T) {
	t.Setenv("POD_NAME", "")
	o := Option{KubeClient: fake.NewClientset(), LeaseLockName: "lk", LeaseLockNamespace: "ns", Run: noop}
	if err := o.Validate(); err != nil {
		t.Fatalf("Validate without ID and POD_NAME: %v", err)
	}
	if got, want := o.withDefaults().ID, lock.DefaultIdentity(); got != want {
		t.Fatalf("ID defaulted to %q, want lock.DefaultIdentity() %q", got, want)
	}
}

// An empty ID takes the lock's identity, which the backend defaulted.
func TestEmptyIDTakesTheLocksIdentity(t *testing.T) {
	t.Setenv("POD_NAME", "")
	l, err := file.New(context.Background(), file.Options{Path: filepath.Join(t.TempDir(), "l.json")})
	if err != nil {
		t.Fatal(err)
	}
	o := Option{Lock: l, Run: noop}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := o.withDefaults().ID; got != l.Identity() || got != lock.DefaultIdentity() {
		t.Fatalf("ID = %q, lock identity %q, want both lock.DefaultIdentity() %q", got, l.Identity(), lock.DefaultIdentity())
	}
}

func TestFlagsUseKubernetesNames(t *testing.T) {
	var o Option
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.AddFlags(fs)
	err := fs.Parse([]string{
		"--leader-elect-lease-duration=20s", "--leader-elect-renew-deadline=12s", "--leader-elect-retry-period=3s",
		"--leader-elect-resource-lock=leases", "--leader-elect-resource-name=ctrl", "--leader-elect-resource-namespace=kube-system",
		"--leader-elect-term-limit=1h", "--leader-elect-recampaign",
	})
	if err != nil {
		t.Fatal(err)
	}
	if o.LeaseDuration != 20*time.Second || o.RenewDeadline != 12*time.Second || o.RetryPeriod != 3*time.Second ||
		o.ResourceLock != "leases" || o.LeaseLockName != "ctrl" || o.LeaseLockNamespace != "kube-system" ||
		o.TermLimit != time.Hour || o.ReleaseOnCancel || o.Disabled || !o.Recampaign {
		t.Fatalf("parsed %+v", o)
	}
	if err := fs.Parse([]string{"--leader-elect=false"}); err != nil || !o.Disabled {
		t.Fatalf("--leader-elect=false: err %v, disabled %v", err, o.Disabled)
	}
	for _, bad := range []string{"--leader-elect-lease-duration=0s", "--leader-elect-renew-deadline=-3s", "--leader-elect-retry-period=soon"} {
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		fs.SetOutput(io.Discard)
		var o Option
		o.AddFlags(fs)
		err := fs.Parse([]string{bad})
		if err == nil || !strings.Contains(err.Error(), strings.SplitN(bad, "=", 2)[0]) {
			t.Errorf("%s: parse error %v, want one naming the flag", bad, err)
		}
	}
}

func TestRunReportsPortInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	err = Run(context.Background(), Option{Lock: locktest.NewMemoryStore("p").Lock("a"), Run: noop, Port: port, HealthBindAddress: "127.0.0.1"})
	if err == nil || !strings.Contains(err.Error(), strconv.Itoa(port)) {
		t.Fatalf("Run on a used port = %v, want an error naming port %d", err, port)
	}
}

func freePort(t *testing.T) int { return testserver.FreePort(t) }

func TestRunOnFileLockServesStatusAndReleasesOnStop(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lock.json")
	l, err := file.New(context.Background(), file.Options{Path: path, Identity: "a"})
	if err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	stop := make(chan struct{})
	leading := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		errc <- Run(context.Background(), Option{
			Lock: l, ID: "a", Port: port, HealthBindAddress: "127.0.0.1", StopCh: stop, ReleaseOnCancel: true,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
			Run: func(ctx context.Context) { close(leading); <-ctx.Done() },
		})
	}()
	select {
	case <-leading:
	case err := <-errc:
		t.Fatalf("Run returned %v", err)
	case <-time.After(testTimeout):
		t.Fatal("never led")
	}
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	body := func(path string) string {
		resp, err := http.Get(base + path)
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	waitFor(t, "/status to say leading", func() bool {
		b := body("/status")
		return strings.Contains(b, `"leading":true`) && strings.Contains(b, `"term":1`)
	})
	// Run gives the elector the health server's renewal metrics through
	// Config.Metrics.
	renewals := regexp.MustCompile(`leader_election_renew_duration_seconds_count\{name="[^"]+"\} [1-9]`)
	waitFor(t, "/metrics to count a renewal", func() bool { return renewals.MatchString(body("/metrics")) })
	for _, p := range []string{"/healthz", "/livez", "/readyz"} {
		resp, err := http.Get(base + p)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %v %v", p, resp, err)
		}
		resp.Body.Close()
	}
	close(stop)
	if err := <-errc; err != nil {
		t.Fatalf("Run after StopCh closed = %v", err)
	}
	rec, _, err := l.Get(context.Background())
	if err != nil || rec.HolderIdentity != "" {
		t.Fatalf("after a graceful stop the record is %+v (%v), want released", rec, err)
	}
	if _, err := http.Get(base + "/healthz"); err == nil {
		t.Fatal("health server still serving after Run returned")
	}
}

func TestDisabledElectionRunsAtOnce(t *testing.T) {
	ran := false
	err := Run(context.Background(), Option{Disabled: true, Port: NoHealthServer, Run: func(ctx context.Context) {
		if _, ok := TermFrom(ctx); ok {
			t.Error("a term without an election")
		}
		ran = true
	}})
	if err != nil || !ran {
		t.Fatalf("Run disabled: err %v ran %v", err, ran)
	}
}

func TestLostLeaseMakesRunFail(t *testing.T) {
	store := locktest.NewMemoryStore("lost")
	errc := make(chan error, 1)
	leading := make(chan struct{})
	go func() {
		errc <- Run(context.Background(), Option{
			Lock: store.Lock("a"), Port: NoHealthServer,
			LeaseDuration: 3 * time.Second, RenewDeadline: 2 * time.Second, RetryPeriod: time.Second,
			Run: func(ctx context.Context) { close(leading); <-ctx.Done() },
		})
	}()
	select {
	case <-leading:
	case err := <-errc:
		t.Fatalf("Run returned %v before leading", err)
	}
	store.SetFault(func(string) error { return errors.New("store down") })
	select {
	case err := <-errc:
		if !errors.Is(err, ErrLeaseLost) {
			t.Fatalf("Run = %v, want ErrLeaseLost", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Run did not fail after the store went down")
	}
}

func TestFlagDefaultsAreTheValuesAlreadyInTheOption(t *testing.T) {
	for _, release := range []bool{false, true} {
		o := Option{
			ReleaseOnCancel: release, Recampaign: release, Disabled: true, StopTimeout: 7 * time.Second, TermLimit: time.Hour,
			LeaseDuration: 20 * time.Second, RenewDeadline: 12 * time.Second, RetryPeriod: 3 * time.Second,
			LeaseLockName: "ctrl", LeaseLockNamespace: "ns", HealthBindAddress: "127.0.0.1",
		}
		want := o
		want.ResourceLock = "leases"
		fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
		o.AddFlags(fs)
		if err := fs.Parse(nil); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(o, want) {
			t.Errorf("AddFlags and no flags changed the options:\n got %+v\nwant %+v", o, want)
		}
		if got := fs.Lookup("leader-elect-release-on-cancel").DefValue; got != strconv.FormatBool(release) {
			t.Errorf("--leader-elect-release-on-cancel shows default %s, want %v (the Option's value)", got, release)
		}
		if got := fs.Lookup("leader-elect").DefValue; got != "false" {
			t.Errorf("--leader-elect shows default %s for a disabled Option", got)
		}
	}
}

// Config's rules are Option's: every rule's error names its field, under
// Option's names with the flag AddFlags binds to it (a flag that exists),
// under Config's with no flag.
func TestEveryRuleNamesItsFieldAndOptionsAddTheFlag(t *testing.T) {
	var o Option
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	o.AddFlags(fs)
	for field, flag := range optionNames.flags {
		if fs.Lookup(flag) == nil {
			t.Errorf("Option's errors name %s by --%s, which AddFlags does not bind", field, flag)
		}
	}
	c := Config{LeaseDuration: 2 * time.Second, RenewDeadline: 3 * time.Second, RetryPeriod: time.Second, TermLimit: time.Minute, RecoverDeadline: time.Minute}
	for i, r := range rules {
		msg := r.msg(&c, configNames)
		if !strings.Contains(msg, r.field) || strings.Contains(msg, "--") {
			t.Errorf("rule %d under Config's names: %q; want it to name %s and no flag", i, msg, r.field)
		}
		msg = r.msg(&c, optionNames)
		flag, ok := optionNames.flags[r.field]
		if !ok {
			t.Errorf("rule %d is on %s, which has no flag", i, r.field)
		}
		if !strings.Contains(msg, r.field) || !strings.Contains(msg, "--"+flag) {
			t.Errorf("rule %d under Option's names: %q; want it to name %s and --%s", i, msg, r.field, flag)
		}
	}
}
