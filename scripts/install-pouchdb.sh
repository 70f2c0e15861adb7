#!/usr/bin/env bash
# Install pouchdb-server (a CouchDB-protocol server, npm) into .tools/ of this checkout when
# missing. Local clusters and the CouchDB contract/integration tests run it; compose uses the
# official couchdb:3 image instead. Idempotent: does nothing when already installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
VERSION="${POUCHDB_SERVER_VERSION:-4.2.0}"
BIN="$TOOLS/node_modules/pouchdb-server/bin/pouchdb-server"
if [ -x "$BIN" ] || [ -f "$BIN" ]; then
  echo "pouchdb-server already installed: $BIN"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "installing nodejs and npm (Debian packages) for pouchdb-server"
  apt-get update -qq && apt-get install -y -qq nodejs npm
fi
echo "installing pouchdb-server@$VERSION from npm into $TOOLS/node_modules"
mkdir -p "$TOOLS"
[ -f "$TOOLS/package.json" ] || echo '{"name": "mydrive-tools", "private": true}' > "$TOOLS/package.json"
npm install --prefix "$TOOLS" --no-audit --no-fund --loglevel=error "pouchdb-server@$VERSION"
echo "pouchdb-server installed: $BIN"
