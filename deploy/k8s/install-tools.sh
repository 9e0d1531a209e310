#!/usr/bin/env bash
# Installs the tools that render and check deploy/k8s into .local/bin (git ignores .local/):
#   kustomize, built from its Go module (the Go module proxy is the only source; needs Go >= 1.26).
# Idempotent: a tool already at the pinned version is left alone, so a second run takes well under
# a second. The first build takes about a minute (module download + compile).
#
#   bash deploy/k8s/install-tools.sh          # prints the path of the kustomize binary
#
# Pinned version: kustomize v5.8.3 and later need Go >= 1.27; v5.8.2 builds with Go 1.26.
set -euo pipefail

KUSTOMIZE_VERSION="${KUSTOMIZE_VERSION:-v5.8.2}"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
BIN="${CLUSTERGRANTS_TOOLS_BIN:-$ROOT/.local/bin}"
TARGET="$BIN/kustomize-$KUSTOMIZE_VERSION"

if [[ ! -x "$TARGET" ]]; then
  command -v go >/dev/null || { echo "install-tools: 'go' is not on PATH (kustomize is built from source)" >&2; exit 1; }
  mkdir -p "$BIN"
  build="$(mktemp -d "$BIN/.build.XXXXXX")"
  trap 'rm -rf "$build"' EXIT
  echo "install-tools: building kustomize $KUSTOMIZE_VERSION (first time only, about a minute)" >&2
  # GOFLAGS=-mod=mod: the module's own go.mod decides the dependencies; GOTOOLCHAIN=local: never
  # download another Go toolchain (only modules come from the proxy).
  GOBIN="$build" GOTOOLCHAIN=local GOFLAGS=-mod=mod \
    go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION" >&2
  mv "$build/kustomize" "$TARGET"   # atomic: a concurrent run sees either nothing or the whole binary
fi
ln -sfn "kustomize-$KUSTOMIZE_VERSION" "$BIN/kustomize"
echo "$BIN/kustomize"
