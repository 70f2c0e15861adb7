#!/usr/bin/env bash
# CouchDB metadata backend: pouchdb-server from npm (scripts/install-pouchdb.sh says what it does).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../install-pouchdb.sh"
