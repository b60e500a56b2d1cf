#!/usr/bin/env bash
# versitygw, the S3 server backend/s3's tests run against, built from the Go
# module proxy, cached by version.
set -euo pipefail
version=v1.8.0
stamp="$LE_BIN_DIR/.versitygw-$version"
[ -f "$stamp" ] && [ -x "$LE_BIN_DIR/versitygw" ] && exit 0
GOBIN="$LE_BIN_DIR" go install "github.com/versity/versitygw/cmd/versitygw@$version"
touch "$stamp"
