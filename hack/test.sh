#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what the tests need
# (each hack/deps/*.sh is idempotent and caches by version), then runs
# go vet, staticcheck and go test -race on every module.
set -euo pipefail
cd "$(dirname "$0")/.."
export LE_BIN_DIR="${LE_BIN_DIR:-$HOME/.cache/leaderelection/bin}"
mkdir -p "$LE_BIN_DIR"
export PATH="$LE_BIN_DIR:$PATH"
start=$(date +%s)

for dep in hack/deps/*.sh; do
  echo "== deps: $dep"
  bash "$dep"
done
echo "== deps ready in $(( $(date +%s) - start ))s"

modules=(.)
for m in example/*/go.mod; do [ -f "$m" ] && modules+=("$(dirname "$m")"); done

for m in "${modules[@]}"; do
  echo "== go vet ($m)"
  (cd "$m" && go vet ./...)
  echo "== staticcheck ($m)"
  (cd "$m" && staticcheck ./...)
done
# The fault campaign's build of the example (bench/faults) carries a hook
# behind a build tag: check that build too.
echo "== go vet, staticcheck (-tags lefaultinject)"
go vet -tags lefaultinject ./example/... ./internal/backendflags/...
staticcheck -tags lefaultinject ./example/... ./internal/backendflags/...
for m in "${modules[@]}"; do
  echo "== go test -race ($m)"
  (cd "$m" && go test -race -count=1 -timeout 40m ./...)
done
# The register's exhaustive search is one goroutine walking states: the
# race detector finds nothing there and makes it five times slower, so it
# is left out of the -race build (search_run_test.go) and runs here.
echo "== go test (exhaustive search of the gossip register)"
go test -count=1 -timeout 20m -run Search ./backend/gossip/internal/casp
echo "== all done in $(( $(date +%s) - start ))s"
