#!/usr/bin/env bash
# The benchmark suite in one command: ./benchmarks/run.sh [--quick] [options]
# (./benchmarks/run.sh --help lists them). Sets up what is missing, then measures.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then ./scripts/setup.sh; fi
exec .venv/bin/python -m benchmarks "$@"
