package main

import (
	"os"
	"path/filepath"
	"testing"
)

// jobScript is the job the run tests put under the lock. It, and a
// grandchild in its process group, append "TERM IDENTITY WHO" to the
// fencing sink $TEST_DIR/sink every 20ms; a second grandchild leaves the
// group with setsid. Each records its pid in $TEST_DIR/WHO.TERM.pid. On
// SIGTERM the job appends "TERM IDENTITY stopped" and exits 0.
const jobScript = `#!/bin/sh
d=$TEST_DIR t=$LEADER_ELECTION_TERM id=$LEADER_ELECTION_IDENTITY
trap 'echo "$t $id stopped" >> "$d/sink"; exit 0' TERM
echo $$ > "$d/child.$t.pid"
(while :; do echo "$t $id grandchild" >> "$d/sink"; sleep 0.02; done) &
echo $! > "$d/grandchild.$t.pid"
setsid sleep 1000 &
echo $! > "$d/escaped.$t.pid"
while :; do echo "$t $id child" >> "$d/sink"; sleep 0.02; done
`

func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
