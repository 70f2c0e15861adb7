#!/usr/bin/env bash
# What the benchmark suite needs beyond mydrive's own set-up; installs only what is missing
# and says what it installs:
#   pip -> ./.venv     matplotlib (the PNG plots) and py-spy (the profiles): `.[bench]` extra
#   apt               openssh-server (the scp/sftp side; the suite runs its own sshd on a
#                     loopback port with its own host key and config, never the system one)
#   pip -> .tools/tahoe-venv   tahoe-lafs, in its own virtualenv (only with --tahoe), so it
#                     never touches the project's .venv
# Idempotent: running it again only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[bench-setup] %s\n' "$*"; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

WANT_TAHOE=0
for arg in "$@"; do
  case "$arg" in
    --tahoe) WANT_TAHOE=1 ;;
    *) echo "usage: benchmarks/setup.sh [--tahoe]" >&2; exit 2 ;;
  esac
done

if [ ! -x .venv/bin/python ]; then
  say "no .venv yet: running scripts/setup.sh first"
  ./scripts/setup.sh
fi

if ! .venv/bin/python -c 'import matplotlib' 2>/dev/null || [ ! -x .venv/bin/py-spy ]; then
  say "installing matplotlib and py-spy into .venv (pip, the 'bench' extra)"
  .venv/bin/python -m pip install -q -e '.[bench]'
fi

if [ ! -x /usr/sbin/sshd ] || ! command -v scp >/dev/null 2>&1 || ! command -v sftp >/dev/null 2>&1; then
  say "installing Debian package: openssh-server (the suite starts its own sshd on loopback)"
  $SUDO apt-get update -qq >/dev/null || true
  # policy-rc.d is not touched: in a container without an init system the packaged service
  # does not start; where it does, it is the system's and the suite never uses it.
  $SUDO apt-get install -y -qq --no-install-recommends openssh-server openssh-client >/dev/null
fi

if [ "$WANT_TAHOE" = 1 ] && [ ! -x .tools/tahoe-venv/bin/tahoe ]; then
  say "installing tahoe-lafs (PyPI) into its own virtualenv .tools/tahoe-venv"
  mkdir -p .tools
  python3 -m venv .tools/tahoe-venv
  .tools/tahoe-venv/bin/python -m pip install -q --upgrade pip
  .tools/tahoe-venv/bin/python -m pip install -q 'tahoe-lafs==1.20.0'
fi
say "ready"
