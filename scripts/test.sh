#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run the whole test suite: static checks, unit, property,
# contract, integration, chaos and browser tests. Extra arguments go to pytest, e.g.
#   scripts/test.sh -m "not integration and not chaos and not browser"   # the quick suite
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
exec .venv/bin/python -m pytest -p no:cacheprovider --durations=30 "$@"
