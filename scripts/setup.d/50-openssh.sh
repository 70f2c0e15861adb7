#!/usr/bin/env bash
# OpenSSH for the SFTP face (issue 16, docs/sftp.md): Debian's openssh-client gives sftp, scp,
# ssh and ssh-keygen, which tests/integration/test_sftp_openssh.py drives; openssh-server
# gives sshd, which benchmarks/sftp_vs_openssh.py runs on a loopback port as the baseline.
set -euo pipefail
missing=()
command -v sftp >/dev/null 2>&1 && command -v scp >/dev/null 2>&1 \
  && command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
[ -x /usr/sbin/sshd ] || missing+=(openssh-server)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "[setup] installing Debian package(s): ${missing[*]} (sftp/scp for the SFTP tests, sshd for its benchmark)"
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq >/dev/null || true
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Debian starts the packaged sshd on port 22; the benchmark runs its own, so stop that one
  # if it was started here.
  if [[ " ${missing[*]} " == *" openssh-server "* ]] && command -v systemctl >/dev/null 2>&1; then
    $SUDO systemctl disable --now ssh 2>/dev/null || true
  fi
fi
