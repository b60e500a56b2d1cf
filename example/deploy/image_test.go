package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// dockerfile is what the image definition says, read line by line (its
// instructions here are one line each).
type dockerfile struct {
	image      string   // the tag in the "docker build -t" comment
	final      string   // the last stage's base
	runs       []string // RUN commands
	copies     []string // COPY arguments
	user       string
	entrypoint []string
}

func readDockerfile(t *testing.T, path string) dockerfile {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d dockerfile
	tag := regexp.MustCompile(`docker build .*-t (\S+)`)
	for _, line := range strings.Split(string(b), "\n") {
		if m := tag.FindStringSubmatch(line); m != nil {
			d.image = m[1]
		}
		word, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
		switch word {
		case "FROM":
			d.final = strings.Fields(rest)[0]
		case "RUN":
			d.runs = append(d.runs, rest)
		case "COPY":
			d.copies = append(d.copies, rest)
		case "USER":
			d.user = rest
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				t.Fatalf("%s: ENTRYPOINT %s is not exec form: %v", path, rest, err)
			}
		}
	}
	return d
}

// The image definition (example/Dockerfile) and the manifests agree: every
// container runs the image the Dockerfile builds, through its entrypoint
// (no command of its own), and the entrypoint is the example binary,
// copied from the build stage, built static (CGO_ENABLED=0), with a
// numeric non-root user on a static base. The manifests' args are flags
// that binary accepts (it parses them).
func TestImageDefinitionAndManifestsNameTheSameBinary(t *testing.T) {
	d := readDockerfile(t, filepath.Join("..", "Dockerfile"))
	if !slices.Equal(d.entrypoint, []string{"/example"}) {
		t.Fatalf("ENTRYPOINT %v, want [/example]", d.entrypoint)
	}
	if !slices.Contains(d.copies, "--from=build /out/example /example") {
		t.Fatalf("no COPY of the build stage's /out/example to /example: %v", d.copies)
	}
	if !strings.Contains(d.final, "distroless/static") {
		t.Errorf("final base %q is not a static distroless image", d.final)
	}
	uid, _, _ := strings.Cut(d.user, ":")
	if n, err := strconv.Atoi(uid); err != nil || n == 0 {
		t.Errorf("USER %q: want a numeric non-root uid (runAsNonRoot needs a number)", d.user)
	}
	i := slices.IndexFunc(d.runs, func(r string) bool { return strings.HasSuffix(r, "-o /out/example ./example") })
	if i < 0 {
		t.Fatalf("no RUN builds ./example to /out/example: %v", d.runs)
	}
	// Static: without cgo, Go links every binary statically (unless told
	// to link externally). Building with the Dockerfile's flags here would
	// recompile every dependency (a cold build of minutes); the build
	// below, with the suite's cached flags, checks the args.
	if !strings.Contains(d.runs[i], "CGO_ENABLED=0 go build") || strings.Contains(d.runs[i], "linkmode") {
		t.Errorf("the build %q does not make a static binary (CGO_ENABLED=0, internal linking): it cannot run on %s", d.runs[i], d.final)
	}
	bin := filepath.Join(t.TempDir(), "example")
	if out, err := exec.Command("go", "build", "-o", bin, "../../example").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	containers := 0
	for _, obj := range manifests(t) {
		spec, found, err := unstructuredPodSpec(obj.Object)
		if err != nil || !found {
			continue
		}
		var ps corev1.PodSpec
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(spec, &ps); err != nil {
			t.Fatal(err)
		}
		for _, c := range ps.Containers {
			containers++
			where := obj.GetKind() + "/" + obj.GetName() + " container " + c.Name
			if c.Image != d.image {
				t.Errorf("%s runs image %q; the Dockerfile builds %q", where, c.Image, d.image)
			}
			if sc := c.SecurityContext; sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
				t.Errorf("%s does not require a non-root user (securityContext.runAsNonRoot), which the image's USER %s meets", where, d.user)
			}
			if len(c.Command) > 0 {
				t.Errorf("%s sets command %v over the image's entrypoint %v", where, c.Command, d.entrypoint)
			}
			// --version exits 0 once the flags parse, before anything runs.
			cmd := exec.Command(bin, append(slices.Clone(c.Args), "--version")...)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s: the example does not accept the manifest's args %v: %v\n%s", where, c.Args, err, out)
			}
		}
	}
	if containers == 0 {
		t.Fatal("no containers in the manifests")
	}
}

// unstructuredPodSpec returns the pod template's spec of a workload.
func unstructuredPodSpec(obj map[string]any) (map[string]any, bool, error) {
	spec, ok := obj["spec"].(map[string]any)
	if !ok {
		return nil, false, nil
	}
	tmpl, ok := spec["template"].(map[string]any)
	if !ok {
		return nil, false, nil
	}
	ps, ok := tmpl["spec"].(map[string]any)
	return ps, ok, nil
}
