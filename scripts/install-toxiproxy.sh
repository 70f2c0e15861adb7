#!/usr/bin/env bash
# Install the Toxiproxy 2.12 server (the chaos test-bed's network-fault proxy) into .tools/bin
# of this checkout when missing, as .tools/bin/toxiproxy-server. It is built from source with
#   go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0
# (Go toolchain and the Go module proxy; `go install` names the binary `server`, so it is
# renamed). Needs Go >= 1.22 on PATH or in /usr/local/go/bin. Idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN_DIR="$ROOT/.tools/bin"
TARGET="$BIN_DIR/toxiproxy-server"
VERSION="v2.12.0"
if [ -x "$TARGET" ]; then
  echo "toxiproxy-server already installed: $TARGET"
  exit 0
fi
GO="$(command -v go || true)"
if [ -z "$GO" ] && [ -x /usr/local/go/bin/go ]; then GO=/usr/local/go/bin/go; fi
if [ -z "$GO" ]; then
  echo "installing golang-go (Debian package) to build toxiproxy"
  apt-get update -qq && apt-get install -y -qq golang-go
  GO="$(command -v go)"
fi
echo "installing toxiproxy server $VERSION with: go install github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION"
mkdir -p "$BIN_DIR"
BUILD="$(mktemp -d)"
trap 'rm -rf "$BUILD"' EXIT
GOBIN="$BUILD" "$GO" install "github.com/Shopify/toxiproxy/v2/cmd/server@$VERSION"
mv "$BUILD/server" "$TARGET"
echo "toxiproxy-server installed: $TARGET"
