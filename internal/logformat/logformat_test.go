package logformat

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// With --logging-format=json every line klog writes, structured or not,
// at the verbosity -v allows, is one JSON object with its message and
// key/value pairs; a line above -v is not written.
func TestJSONFormatWritesOneObjectPerLine(t *testing.T) {
	f := parsed(t, "--logging-format=json")
	var buf bytes.Buffer
	if err := f.Apply(&buf); err != nil {
		t.Fatal(err)
	}
	defer klog.ClearLogger()
	klog.InfoS("Acquired the lock", "term", 3)
	klog.FromContext(t.Context()).Error(errors.New("boom"), "Renewal failed", "lock", "file:///x")
	klog.V(9).InfoS("Not shown at the default verbosity")
	klog.Flush()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d lines, want 2:\n%s", len(lines), buf.String())
	}
	var first, second map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil {
		t.Fatalf("line 1 is not JSON: %v\n%s", err, lines[0])
	}
	if err := json.Unmarshal([]byte(lines[1]), &second); err != nil {
		t.Fatalf("line 2 is not JSON: %v\n%s", err, lines[1])
	}
	if first["msg"] != "Acquired the lock" || first["term"] != float64(3) || first["level"] != "INFO" {
		t.Errorf("line 1: %v", first)
	}
	if second["msg"] != "Renewal failed" || second["err"] != "boom" || second["lock"] != "file:///x" || second["level"] != "ERROR" {
		t.Errorf("line 2: %v", second)
	}
}

func TestUnknownFormatIsAnErrorNamingTheFlag(t *testing.T) {
	if err := parsed(t, "--logging-format=xml").Apply(&bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--logging-format") {
		t.Fatalf("error %v, want one naming --logging-format", err)
	}
}

// parsed is a Flag after parsing args.
func parsed(t *testing.T, args ...string) *Flag {
	t.Helper()
	var f Flag
	fs := pflag.NewFlagSet("t", pflag.ContinueOnError)
	f.AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return &f
}
