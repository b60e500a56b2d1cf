#!/usr/bin/env bash
# staticcheck, built from the Go module proxy, cached by version.
set -euo pipefail
version=v0.8.2
stamp="$LE_BIN_DIR/.staticcheck-$version"
[ -f "$stamp" ] && [ -x "$LE_BIN_DIR/staticcheck" ] && exit 0
GOBIN="$LE_BIN_DIR" go install "honnef.co/go/tools/cmd/staticcheck@$version"
touch "$stamp"
