#!/usr/bin/env bash
# nftables (the `nft` command) for the chaos harness's network-namespace backend
# (chaos/netns.py, docs/chaos.md): per-link cuts are nft reject rules inside the target
# peer's namespace. Only that backend needs it, and only when running as root on Linux.
set -euo pipefail
if [ "$(uname -s)" = Linux ] && ! command -v nft >/dev/null 2>&1 && [ ! -x /usr/sbin/nft ]; then
  echo "[setup] installing Debian package: nftables (nft: per-link cuts in the chaos netns backend)"
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null || true
  $SUDO apt-get install -y -qq --no-install-recommends nftables >/dev/null
  # Debian's nftables.service loads /etc/nftables.conf at boot; we only use the binary.
fi
