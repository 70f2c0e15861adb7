#!/usr/bin/env bash
# Containers for the compose clusters (docs/deploy.md, chaos backend `compose`): a Docker
# engine (Debian docker.io, started by hand: no init system), Compose v2 built from its Go
# module, and the images, built without a registry. scripts/containers.sh does it and says
# what it installs and builds.
#
# Opt-in here because a cold run takes minutes (Compose from source, a Debian root file
# system, the images): MYDRIVE_SETUP_CONTAINERS=1 scripts/setup.sh. The compose tests
# (tests/integration/test_compose_cluster.py, tests/chaos/test_compose_backend.py) run the
# same script themselves whenever they run, so `scripts/test.sh` needs no flag.
set -euo pipefail
SCRIPT="$(dirname "${BASH_SOURCE[0]}")/../containers.sh"
if [ "${MYDRIVE_SETUP_CONTAINERS:-0}" != 1 ]; then
  echo "[setup] containers: not set up now (MYDRIVE_SETUP_CONTAINERS=1 does; the compose tests do it when they run)"
  exit 0
fi
bash "$SCRIPT" install
started=0
out="$(bash "$SCRIPT" start)"; echo "$out"
case "$out" in *"engine: started dockerd"*) started=1 ;; esac
bash "$SCRIPT" compose
bash "$SCRIPT" images
# Leave the machine as it was: the engine runs again when something needs it (< 1 s).
if [ "$started" = 1 ]; then bash "$SCRIPT" stop; fi
