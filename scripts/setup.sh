#!/usr/bin/env bash
# Set up everything mydrive and its test-bed need on Debian/Ubuntu (Python 3.11+).
# Installs, only when missing, and says so:
#   apt:  python3-venv (virtualenvs)
#   pip:  mydrive and its dev/test tools into ./.venv (grpcio, cryptography, blake3, click,
#         rich, flask, waitress, gunicorn, pytest, hypothesis, mypy, ruff, playwright;
#         see pyproject.toml)
#   mydrive/**/__pycache__: the bytecode of mydrive's modules (compileall), a quick CLI start
# Idempotent: running it again only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[setup] %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

apt_install() {
  say "installing Debian packages: $*"
  $SUDO apt-get update -qq >/dev/null || true
  $SUDO apt-get install -y -qq "$@" >/dev/null
}

PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "mydrive needs Python 3.11 or newer; found $("$PYTHON" --version 2>&1)" >&2
  exit 1
fi

if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -m venv --help >/dev/null 2>&1 || ! "$PYTHON" -c 'import ensurepip' 2>/dev/null; then
    apt_install python3-venv
  fi
  say "creating virtualenv .venv"
  "$PYTHON" -m venv .venv
fi

if ! .venv/bin/python -c 'import mydrive, grpc, hypothesis, pytest' 2>/dev/null \
   || [ pyproject.toml -nt .venv/.mydrive-installed ]; then
  say "installing mydrive and its Python dependencies into .venv (pip)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e '.[dev]'
  touch .venv/.mydrive-installed
fi

# The CLI's start-up: with PYTHONDONTWRITEBYTECODE set (CI, and this machine), Python caches
# no bytecode, and pip compiled none of mydrive's own modules (an editable install): every
# command would compile them again (~40 ms a start). compileall writes only new or changed
# ones; a .pyc whose source changed since is never run (Python checks the source's mtime).
say "compiling mydrive's modules to bytecode (compileall: only new or changed ones)"
.venv/bin/python -m compileall -q -j 0 --invalidation-mode timestamp mydrive >/dev/null

for extra in scripts/setup.d/*.sh; do
  [ -e "$extra" ] || continue
  bash "$extra"
done
say "ready: $(.venv/bin/mydrive --help >/dev/null && echo 'mydrive CLI in .venv/bin/mydrive')"
