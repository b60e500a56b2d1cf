package version

import (
	"runtime"
	"strings"
	"testing"
)

func TestStringNamesTheCommandAndGo(t *testing.T) {
	s := String("leaderelection")
	if !strings.HasPrefix(s, "leaderelection ") || !strings.HasSuffix(s, " "+runtime.Version()) {
		t.Fatalf("String = %q, want the name first and the Go version last", s)
	}
}
