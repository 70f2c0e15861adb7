#!/usr/bin/env bash
# Chromium for the browser tests of the web UI (issue 6): Debian's `chromium` package,
# driven by Playwright (a PyPI package in the dev extras) through executable_path.
# Never `playwright install`: its browser download is not reachable from our machines.
set -euo pipefail
if ! command -v chromium >/dev/null 2>&1; then
  echo "[setup] installing Debian package: chromium (real browser for tests/browser/)"
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null || true
  $SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi
