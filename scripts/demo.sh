#!/usr/bin/env bash
# Set up (scripts/setup.sh), start a local network of 5 peers on loopback (SQLite metadata,
# the embedded default) and do a sample round trip: create a user, store a file, list it,
# show where its chunks went, fetch it back and compare. The network keeps running after;
# stop it with: .venv/bin/mydrive cluster down --home cluster-home
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh

CLUSTER_HOME="${MYDRIVE_CLUSTER_HOME:-cluster-home}"
PEERS="${MYDRIVE_PEERS:-5}"
MD=.venv/bin/mydrive
export MYDRIVE_PEER="$CLUSTER_HOME/peer-0"
export MYDRIVE_USER="${MYDRIVE_USER:-demo}"
export MYDRIVE_PASSPHRASE="${MYDRIVE_PASSPHRASE:-demo passphrase, change me}"

echo "== starting $PEERS peers in $CLUSTER_HOME"
$MD cluster up --home "$CLUSTER_HOME" --peers "$PEERS" --detach

if ! $MD ls >/dev/null 2>&1; then
  echo "== creating user $MYDRIVE_USER on peer-0"
  $MD user create
fi

SAMPLE="$CLUSTER_HOME/sample-$(date +%s).bin"
head -c $((20 * 1024 * 1024)) /dev/urandom > "$SAMPLE"
REMOTE="/samples/$(basename "$SAMPLE")"
echo "== storing a 20 MiB file as $REMOTE"
$MD put "$SAMPLE" "$REMOTE"
echo "== your files"
$MD ls
echo "== where its chunks are (no peer holds them all; peer-0, the owner's, holds none)"
$MD inspect "$REMOTE"
echo "== fetching it back"
$MD get "$REMOTE" --out "$CLUSTER_HOME/fetched"
cmp "$SAMPLE" "$CLUSTER_HOME/fetched$REMOTE" && echo "== round trip OK: bit-identical"
echo
$MD cluster status --home "$CLUSTER_HOME" || true
echo "The network is still running. Stop it with: $MD cluster down --home $CLUSTER_HOME"
