#!/usr/bin/env bash
# nginx for TLS termination between peers (issue 4): Debian's nginx-light has http2 + grpc.
set -euo pipefail
if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
  echo "[setup] installing Debian package: nginx-light (TLS front of every peer)"
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null || true
  $SUDO apt-get install -y -qq --no-install-recommends nginx-light >/dev/null
  # Debian starts the packaged nginx service; mydrive runs its own per peer, stop that one
  # if it was started here (it would hold port 80).
  if command -v systemctl >/dev/null 2>&1; then $SUDO systemctl disable --now nginx 2>/dev/null || true; fi
fi
