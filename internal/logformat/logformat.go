// Package logformat adds --logging-format to a command: text (klog's own
// format, the default) or json (one JSON object per line, written by
// log/slog's JSON handler), as Kubernetes components offer it, without
// k8s.io/component-base.
package logformat

import (
	"fmt"
	"io"
	"log/slog"
	"math"

	"github.com/go-logr/logr"
	"github.com/spf13/pflag"
	"k8s.io/klog/v2"
)

// Flag is the --logging-format flag.
type Flag struct {
	format string
}

// AddFlags registers --logging-format on fs.
func (f *Flag) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&f.format, "logging-format", "text", `Log format: "text" (klog's) or "json" (one JSON object per line: time, level, msg and the key/value pairs).`)
}

// Apply routes klog, and every logger taken from it (klog.Background,
// klog.FromContext), to w in the chosen format. Call it once, after the
// flags are parsed and before anything logs. Verbosity stays klog's -v:
// klog checks it before a line reaches the JSON handler, which then
// writes every line it is given.
func (f *Flag) Apply(w io.Writer) error {
	switch f.format {
	case "", "text":
		return nil
	case "json":
		h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.Level(math.MinInt)})
		klog.SetLoggerWithOptions(logr.FromSlogHandler(h))
		return nil
	}
	return fmt.Errorf("--logging-format=%q: want text or json", f.format)
}
