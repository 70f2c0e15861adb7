#!/usr/bin/env bash
# Chaos test-bed: the Toxiproxy 2.12 server (scripts/install-toxiproxy.sh says what it does).
set -euo pipefail
exec "$(dirname "${BASH_SOURCE[0]}")/../install-toxiproxy.sh"
