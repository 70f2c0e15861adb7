#!/usr/bin/env bash
# The benchmark suite's Python tools (docs/benchmarks.md): matplotlib for its PNG plots and
# py-spy for its profiles, the `bench` extra of pyproject.toml, into ./.venv. sshd comes from
# 50-openssh.sh; Tahoe-LAFS is installed only when a benchmark run asks for it
# (benchmarks/setup.sh --tahoe, into its own virtualenv .tools/tahoe-venv).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
if ! .venv/bin/python -c 'import matplotlib' 2>/dev/null || [ ! -x .venv/bin/py-spy ]; then
  echo "[setup] installing matplotlib and py-spy into .venv (pip, the 'bench' extra: benchmark plots and profiles)"
  .venv/bin/python -m pip install -q -e '.[bench]'
fi
