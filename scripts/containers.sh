#!/usr/bin/env bash
# Containers on a machine like ours (Debian 12, root, no systemd, no image registry reachable):
# a Docker engine, Compose v2 and the images docker/ and `mydrive compose generate` need.
# Facts behind every step: docs/deploy.md "Containers on a machine without a registry".
#
#   scripts/containers.sh [all]   everything below, in order (idempotent; says what it does)
#   scripts/containers.sh install Debian packages when missing: docker.io (engine) when no
#                                 engine answers, mmdebstrap (root file systems)
#   scripts/containers.sh start   start dockerd when no engine answers; pid file and log in
#                                 .tools/docker/; prints "engine: started …" or "engine: running"
#   scripts/containers.sh stop    end the dockerd this script started (by the PID in its pid
#                                 file, only if that process is still dockerd)
#   scripts/containers.sh compose Compose v2 as a CLI plugin, built from its Go module once
#                                 (cached as .tools/bin/docker-compose)
#   scripts/containers.sh images  the images: mydrive-debian:bookworm (mmdebstrap + docker
#                                 import), official names (python:3.11-slim, nginx:1.28,
#                                 couchdb:3, ghcr.io/shopify/toxiproxy:2.12.0) pulled, or built
#                                 as local stand-ins from docker/standins/ when pulling fails,
#                                 and mydrive:VERSION from docker/Dockerfile (rebuilt only when
#                                 its build context changed)
#   scripts/containers.sh status  what is there
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"
STATE="$TOOLS/docker"              # dockerd.pid, dockerd.log, build scratch
PIDFILE="$STATE/dockerd.pid"
LOG="$STATE/dockerd.log"
COMPOSE_VERSION="v2.40.3"
COMPOSE_BIN="$TOOLS/bin/docker-compose"
PLUGIN_DIR="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
TOXIPROXY_VERSION="2.12.0"
BASE_IMAGE="mydrive-debian:bookworm"
SUITE="bookworm"
ENGINE_WAIT_S=60
PULL_TIMEOUT_S="${MYDRIVE_PULL_TIMEOUT_S:-30}"

say() { printf '[containers] %s\n' "$*"; }
die() { printf '[containers] error: %s\n' "$*" >&2; exit 1; }
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

apt_install() {
  say "installing Debian packages: $*"
  $SUDO apt-get update -qq >/dev/null || true
  $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

engine_answers() { timeout 10 docker info >/dev/null 2>&1; }

find_dockerd() {
  command -v dockerd 2>/dev/null || { [ -x /usr/sbin/dockerd ] && echo /usr/sbin/dockerd; } || true
}

# ---- install ---------------------------------------------------------------------------
cmd_install() {
  if ! command -v docker >/dev/null 2>&1 || { ! engine_answers && [ -z "$(find_dockerd)" ]; }; then
    # Debian's docker.io: dockerd 20.10 with containerd 1.6 and runc 1.1. Its post-install
    # can't start the service without an init system; `start` below runs it by hand.
    apt_install docker.io
  fi
  if ! command -v mmdebstrap >/dev/null 2>&1; then
    apt_install mmdebstrap
  fi
  if ! command -v go >/dev/null 2>&1 && [ ! -x /usr/local/go/bin/go ]; then
    apt_install golang-go   # builds Compose v2 and Toxiproxy
  fi
}

# ---- engine ----------------------------------------------------------------------------
our_dockerd_pid() {
  # The PID in our pid file, if that process still runs dockerd.
  [ -f "$PIDFILE" ] || return 1
  local pid; pid="$(cat "$PIDFILE")"
  [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ] && echo "$pid"
}

cmd_start() {
  if engine_answers; then
    say "engine: running ($(docker version --format '{{.Server.Version}}' 2>/dev/null))"
    return 0
  fi
  local dockerd; dockerd="$(find_dockerd)"
  [ -n "$dockerd" ] || die "no Docker engine answers and dockerd is not installed: run $0 install"
  [ "$(id -u)" = 0 ] || die "no Docker engine answers, and starting dockerd needs root (or start one yourself: rootless docker, Docker Desktop)"
  mkdir -p "$STATE"
  # dockerd sets the FORWARD chain's policy to DROP (and leaves it so when it ends), which
  # stops traffic between other bridges, e.g. the chaos netns backend's: remember it.
  if command -v iptables >/dev/null 2>&1; then
    iptables -S FORWARD 2>/dev/null | sed -n 's/^-P FORWARD //p' > "$STATE/forward-policy" || true
  fi
  say "starting $dockerd (log: $LOG)"
  # Its own session, so it outlives this script and the test that asked for it; containerd
  # is started by dockerd itself and ends with it.
  setsid "$dockerd" --pidfile "$PIDFILE" >>"$LOG" 2>&1 < /dev/null &
  local waited=0
  until engine_answers; do
    sleep 0.5; waited=$((waited + 1))
    if [ "$waited" -gt $((ENGINE_WAIT_S * 2)) ]; then
      tail -n 20 "$LOG" >&2 || true
      die "dockerd did not answer within ${ENGINE_WAIT_S} s (log: $LOG)"
    fi
  done
  say "engine: started dockerd (pid $(cat "$PIDFILE"); stop with: $0 stop)"
}

cmd_stop() {
  local pid
  if ! pid="$(our_dockerd_pid)"; then
    say "engine: no dockerd started by this script is running"
    rm -f "$PIDFILE"
    return 0
  fi
  say "stopping dockerd (pid $pid)"
  kill -TERM "$pid"
  for _ in $(seq 1 120); do
    [ -d "/proc/$pid" ] || break
    sleep 0.25
  done
  if [ -d "/proc/$pid" ]; then
    say "dockerd (pid $pid) did not stop within 30 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PIDFILE"
  local policy; policy="$(cat "$STATE/forward-policy" 2>/dev/null || true)"
  if [ -n "$policy" ] && [ "$policy" != "$(iptables -S FORWARD 2>/dev/null | sed -n 's/^-P FORWARD //p')" ]; then
    iptables -P FORWARD "$policy" && say "iptables FORWARD policy back to $policy (dockerd had set DROP)"
  fi
  rm -f "$STATE/forward-policy"
  say "engine: stopped"
}

# ---- compose v2 ------------------------------------------------------------------------
go_bin() {
  command -v go 2>/dev/null || { [ -x /usr/local/go/bin/go ] && echo /usr/local/go/bin/go; } || true
}

cmd_compose() {
  local want="${COMPOSE_VERSION#v}"
  if docker compose version 2>/dev/null | grep -q "v\?$want"; then
    say "compose: $(docker compose version)"
    return 0
  fi
  if [ ! -x "$COMPOSE_BIN" ] || ! "$COMPOSE_BIN" version 2>/dev/null | grep -q "$want"; then
    local go minor; go="$(go_bin)"
    [ -n "$go" ] || die "Go is needed to build Compose v2: run $0 install"
    minor="$("$go" env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
    [ "${minor:-0}" -ge 24 ] \
      || die "Compose $COMPOSE_VERSION needs Go >= 1.24 to build; $go is $("$go" env GOVERSION) (install a newer Go, e.g. in /usr/local/go)"
    # `go install github.com/docker/compose/v2/cmd@…` is refused (its go.mod has exclude
    # directives), so build it from a throw-away module that requires it (2-4 min once,
    # ~1.5 GB of Go caches in Go's usual places).
    local mod="$STATE/compose-module"
    say "building Docker Compose $COMPOSE_VERSION from its Go module (once; 2-4 min)"
    rm -rf "$mod" && mkdir -p "$mod" "$(dirname "$COMPOSE_BIN")"
    (
      cd "$mod"
      printf 'module mydrive.local/compose-build\n\ngo 1.24\n' > go.mod
      printf '//go:build tools\n\npackage tools\n\nimport _ "github.com/docker/compose/v2/cmd"\n' > tools.go
      "$go" get "github.com/docker/compose/v2@$COMPOSE_VERSION" >/dev/null 2>&1
      "$go" mod tidy >/dev/null 2>&1
      nice "$go" build -trimpath \
        -ldflags "-s -w -X github.com/docker/compose/v2/internal.Version=$COMPOSE_VERSION" \
        -o "$COMPOSE_BIN.tmp" github.com/docker/compose/v2/cmd
    )
    mv "$COMPOSE_BIN.tmp" "$COMPOSE_BIN"
    rm -rf "$mod"
  fi
  mkdir -p "$PLUGIN_DIR"
  install -m 0755 "$COMPOSE_BIN" "$PLUGIN_DIR/docker-compose"
  say "compose: installed CLI plugin $PLUGIN_DIR/docker-compose ($(docker compose version))"
}

# ---- images ----------------------------------------------------------------------------
have_image() { docker image inspect "$1" >/dev/null 2>&1; }

apt_mirror() {
  # The Debian mirror apt already uses (deb822 URIs: or a one-line `deb URL suite`).
  local uri
  uri="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' \
         | grep -v security | head -n 1 || true)"
  if [ -z "$uri" ]; then
    uri="$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
           | awk '{print $2}' | grep -v security | head -n 1 || true)"
  fi
  echo "${uri:-http://deb.debian.org/debian}"
}

build_base() {
  if have_image "$BASE_IMAGE"; then
    say "image $BASE_IMAGE: present"
    return 0
  fi
  command -v mmdebstrap >/dev/null 2>&1 || die "mmdebstrap is missing: run $0 install"
  local mirror tar hooks=()
  mirror="$(apt_mirror)"
  tar="$STATE/$SUITE-minbase.tar"
  mkdir -p "$STATE"
  # Containers reach the package registries only if they trust the machine's extra CA
  # certificates (a TLS-inspecting egress), so those go into the root file system.
  local cas=(/usr/local/share/ca-certificates/*.crt)
  if [ -e "${cas[0]}" ]; then
    hooks+=(--customize-hook="mkdir -p \"\$1/usr/local/share/ca-certificates\"")
    hooks+=(--customize-hook="copy-in ${cas[*]} /usr/local/share/ca-certificates/")
    hooks+=(--customize-hook="chroot \"\$1\" update-ca-certificates >/dev/null")
    say "adding this machine's extra CA certificates to it: ${cas[*]}"
  fi
  say "building a Debian $SUITE root file system (mmdebstrap --variant=minbase, mirror $mirror)"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates "${hooks[@]}" \
    "$SUITE" "$tar" "$mirror"
  say "docker import -> $BASE_IMAGE"
  docker import --change 'CMD ["bash"]' --change 'ENV LANG=C.UTF-8' "$tar" "$BASE_IMAGE" >/dev/null
  rm -f "$tar"
}

# pull_or_standin NAME DOCKERFILE [CONTEXT_FUNCTION]: the official image when it can be pulled,
# else a local stand-in tagged with the official name (the function prints its build context).
pull_or_standin() {
  local name="$1" dockerfile="$2" context_fn="${3:-}"
  if have_image "$name"; then
    local note; note="$(docker image inspect -f '{{index .Config.Labels "org.mydrive.standin"}}' "$name" 2>/dev/null || true)"
    say "image $name: present${note:+ (LOCAL STAND-IN: $note)}"
    return 0
  fi
  local err
  if err="$(timeout "$PULL_TIMEOUT_S" docker pull -q "$name" 2>&1)"; then
    say "image $name: pulled"
    return 0
  fi
  say "image $name: pulling failed ($(echo "$err" | tail -n 1 | cut -c1-100)…)"
  say "image $name: building a LOCAL STAND-IN from ${dockerfile#"$ROOT"/}"
  local out
  if [ -n "$context_fn" ]; then
    local context; context="$($context_fn)"
    out="$(DOCKER_BUILDKIT=0 docker build -q -f "$context/Dockerfile" -t "$name" "$context" 2>&1)" \
      || die "building the stand-in $name failed: $out"
    rm -rf "$context"
  else
    out="$(DOCKER_BUILDKIT=0 docker build -q -t "$name" - < "$dockerfile" 2>&1)" \
      || die "building the stand-in $name failed: $out"
  fi
}

project_version() {
  sed -n 's/^version = "\(.*\)"/\1/p' "$ROOT/pyproject.toml" | head -n 1
}

project_context() {
  # What docker/Dockerfile copies, as a deterministic tar (same bytes for the same files), so
  # its digest says whether the image is up to date.
  (cd "$ROOT" && tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
     --exclude=__pycache__ --exclude='*.pyc' --exclude='*.egg-info' \
     -cf - pyproject.toml mydrive sim chaos nginx docker/Dockerfile)
}

build_project() {
  local version tag digest have
  version="$(project_version)"
  tag="mydrive:$version"
  digest="$(project_context | sha256sum | cut -c1-16)"
  have="$(docker image inspect -f '{{index .Config.Labels "org.mydrive.context"}}' "$tag" 2>/dev/null || true)"
  if [ "$have" = "$digest" ]; then
    say "image $tag: up to date (build context $digest)"
    return 0
  fi
  say "image $tag: building from docker/Dockerfile (build context $digest; DOCKER_BUILDKIT=0)"
  local start=$SECONDS
  # The classic builder: BuildKit would try to pull the `# syntax=` frontend image.
  local out
  out="$(project_context | DOCKER_BUILDKIT=0 docker build -q -f docker/Dockerfile \
    --label "org.mydrive.context=$digest" -t "$tag" - 2>&1)" \
    || die "building $tag failed: $out"
  say "image $tag: built in $((SECONDS - start)) s"
  # The image it replaced and the build stage's image are left untagged: remove them.
  docker image prune -f --filter "label=org.opencontainers.image.title=mydrive" >/dev/null 2>&1 || true
  docker image prune -f --filter "label=org.mydrive.stage=build" >/dev/null 2>&1 || true
}

toxiproxy_context() {
  # The stand-in's build context: the server built from Toxiproxy's Go module
  # (scripts/install-toxiproxy.sh: go install github.com/Shopify/toxiproxy/v2/cmd/server@v2.12.0).
  local ctx="$STATE/toxiproxy-context"
  bash "$ROOT/scripts/install-toxiproxy.sh" >/dev/null
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$TOOLS/bin/toxiproxy-server" "$ctx/toxiproxy"
  cp "$ROOT/docker/standins/toxiproxy.Dockerfile" "$ctx/Dockerfile"
  echo "$ctx"
}

couchdb_context() {
  # The stand-in's build context: pouchdb-server as the local network runs it
  # (scripts/install-pouchdb.sh puts it in .tools/node_modules) plus the CouchDB shim.
  local ctx="$STATE/couchdb-context"
  bash "$ROOT/scripts/install-pouchdb.sh" >/dev/null
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp -a "$TOOLS/node_modules" "$ctx/node_modules"
  cp "$ROOT/docker/standins/couchdb-shim.js" "$ctx/"
  cp "$ROOT/docker/standins/couchdb.Dockerfile" "$ctx/Dockerfile"
  echo "$ctx"
}

cmd_images() {
  engine_answers || die "no Docker engine answers: run $0 start"
  build_base
  smoke_test
  local d="$ROOT/docker/standins"
  pull_or_standin "python:3.11-slim" "$d/python.Dockerfile"
  pull_or_standin "nginx:1.28" "$d/nginx.Dockerfile"
  pull_or_standin "couchdb:3" "$d/couchdb.Dockerfile" couchdb_context
  pull_or_standin "ghcr.io/shopify/toxiproxy:$TOXIPROXY_VERSION" "$d/toxiproxy.Dockerfile" \
    toxiproxy_context
  build_project
}

smoke_test() {
  # A container must run. The known failure on our machines is a cgroup one (the hugetlb
  # controller left on cgroup v2 in hybrid mode); its fix is one mount, kept until reboot.
  local out
  if out="$(docker run --rm --network none "$BASE_IMAGE" true 2>&1)"; then
    return 0
  fi
  if echo "$out" | grep -qi cgroup && [ ! -d /sys/fs/cgroup/hugetlb ] \
     && grep -q ' /sys/fs/cgroup tmpfs' /proc/mounts; then
    say "a container failed with a cgroup error; applying the known fix: mount the hugetlb cgroup (v1) at /sys/fs/cgroup/hugetlb"
    $SUDO mkdir -p /sys/fs/cgroup/hugetlb
    $SUDO mount -t cgroup -o hugetlb cgroup /sys/fs/cgroup/hugetlb
    out="$(docker run --rm --network none "$BASE_IMAGE" true 2>&1)" && return 0
  fi
  die "a test container does not run: $out"
}

cmd_status() {
  if engine_answers; then
    say "engine: $(docker version --format 'server {{.Server.Version}}, API {{.Server.APIVersion}}')"
    local pid; pid="$(our_dockerd_pid || true)"
    [ -n "$pid" ] && say "engine: dockerd pid $pid started by this script"
  else
    say "engine: none answers"
  fi
  docker compose version 2>/dev/null | sed 's/^/[containers] compose: /' || say "compose: missing"
  if engine_answers; then
    docker image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
      | grep -E "^(mydrive|mydrive-debian|python|nginx|couchdb|ghcr.io/shopify/toxiproxy):" \
      | sed 's/^/[containers] image /' || true
  fi
}

case "${1:-all}" in
  all) cmd_install; cmd_start; cmd_compose; cmd_images ;;
  install) cmd_install ;;
  start) cmd_start ;;
  stop) cmd_stop ;;
  compose) cmd_compose ;;
  images) cmd_images ;;
  status) cmd_status ;;
  *) die "unknown command ${1}; one of: all install start stop compose images status" ;;
esac
