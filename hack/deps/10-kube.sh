#!/usr/bin/env bash
# kube-apiserver and etcd for the Kubernetes backend's tests, built from the
# Go module proxy by the tool module hack/kube, cached by the hash of that
# module (its go.mod pins k8s.io/kubernetes and every staging module).
# Cold: 7-12 minutes and ~1.8 GB of memory on 2 cores; warm: instant.
set -euo pipefail
cd "$(dirname "$0")/../kube"
: "${LE_BIN_DIR:=$HOME/.cache/leaderelection/bin}"
mkdir -p "$LE_BIN_DIR"
version=$(awk '$1=="k8s.io/kubernetes" {print $2; exit}' go.mod)
hash=$(cat go.mod go.sum etcd/main.go | sha256sum | cut -c1-12)
stamp="$LE_BIN_DIR/.kube-$version-$hash"
[ -f "$stamp" ] && [ -x "$LE_BIN_DIR/kube-apiserver" ] && [ -x "$LE_BIN_DIR/etcd" ] && exit 0
echo "building kube-apiserver $version and etcd (cold: several minutes)"
flags=(-trimpath -ldflags=-s\ -w)
go build "${flags[@]}" -o "$LE_BIN_DIR/etcd.tmp" ./etcd
go build "${flags[@]}" -o "$LE_BIN_DIR/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver
mv "$LE_BIN_DIR/etcd.tmp" "$LE_BIN_DIR/etcd"
mv "$LE_BIN_DIR/kube-apiserver.tmp" "$LE_BIN_DIR/kube-apiserver"
rm -f "$LE_BIN_DIR"/.kube-*
touch "$stamp"
