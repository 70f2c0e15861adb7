"""The docker compose backend: a project from ``mydrive compose generate`` (the same pods
users deploy, docker/compose.peer.yaml) brought up through testcontainers' DockerCompose.

    host (the harness, `mydrive put/get --peer HOME/peers/peer-I`, the checkers)
      │  127.0.0.1:couchdb_port ─ published ─► pod I's CouchDB (the owner's metadata)
      └─► Toxiproxy container TOXI:PEER_PORT_I ─► pod I (nginx, mutual TLS) ─► receiver/sender
    pods pull each other's metadata the same way: their nginx egress ─► Toxiproxy ─► pod

Faults:

* kill, restart, resume: ``docker kill`` (SIGKILL) or ``docker stop`` (SIGTERM), then
  ``docker start``, of the pod's receiver and sender containers. A killed container stays
  down until ``resume`` (docker does not restart what was killed on purpose).
* isolate: the peer's proxy disabled and its pod ``docker network disconnect``-ed (its own
  metadata pulls stop too); ``heal`` connects it again at the same address.
* cut, down/up, flap: the target's proxy disabled / enabled (connections refused).
* latency, bandwidth, timeout, reset_peer: a toxic on the target's proxy.
* pause (``pause``/``unpause``, not in the scenario vocabulary): ``docker pause`` of every
  container of the pod, so connections hang instead of being refused.

What differs from the local backends, and why: every peer is reached at ONE address (its
peer document's, signed by the peer; nginx carries receiver, sender and metadata over the
same mutual-TLS port), so a link ``S → T`` is T's proxy: cutting it cuts every source's
traffic to T, a toxic for one service applies to T's whole link, and ``source`` narrows
nothing. In scenarios only the owner dials (the harness runs its client on the host), so
``cut owner victim`` means what it means elsewhere; the victim's metadata pulls from the
others go on, its pulls *from* the victim stop too.

Peer directories are bind mounts (HOME/peers/peer-I), so the checkers read every store on
disk and bit-rot flips bytes in the files the containers serve. Seeded fault plans
(``--fault-plan``) are mounted into the receiver and sender containers at the path the harness
uses, so their fault log is the harness's.

The engine, Compose v2 and the images come from scripts/containers.sh (``prepare_engine``,
``prepare_images``); this module never installs anything itself.
"""

from __future__ import annotations

import ipaddress
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from mydrive.errors import PeerUnavailable
from mydrive.node import compose as generator
from mydrive.node import peerset
from mydrive.node.compose import ComposeProject
from mydrive.node.peerdir import PeerDir

from .cluster import SERVICE_KINDS, ChaosPeer
from .toxiproxy import Toxic, ToxiproxyClient, ToxiproxyError

# testcontainers' reaper (Ryuk) is an image from a registry our machines can't reach; the
# harness removes what it starts itself (``stop`` runs ``compose down -v``).
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")

ROOT = Path(__file__).resolve().parent.parent
CONTAINERS_SCRIPT = ROOT / "scripts" / "containers.sh"
SCRIPT_TIMEOUT_S = 1800.0       # a cold machine: packages, Compose from source, images
DOCKER_TIMEOUT_S = 60.0
READY_TIMEOUT_S = 180.0  # a loaded 2-core machine starts 36 containers slowly
STOP_TIMEOUT_S = 10
HEALTH_INTERVAL_S = 2          # the pods' health checks (nginx, CouchDB: bash, cheap)
SUBNET_POOL = ipaddress.ip_network("10.219.0.0/16")
MAX_PEERS = peerset.MAX_PEERS


class ComposeUnavailable(Exception):
    """No Docker engine can be made to run here; the message says why (the set-up's words)."""


class ComposeError(Exception):
    """The engine runs but the project could not be built, started or changed."""


# ---- the engine and the images (scripts/containers.sh) ----------------------------------
def _script(command: str, *,
            timeout_s: float = SCRIPT_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    if not CONTAINERS_SCRIPT.exists():
        raise ComposeUnavailable(f"{CONTAINERS_SCRIPT} is missing (not a source checkout?)")
    return subprocess.run(["bash", str(CONTAINERS_SCRIPT), command], capture_output=True,
                          text=True, timeout=timeout_s, check=False)


def _say(proc: subprocess.CompletedProcess[str]) -> None:
    for line in (proc.stdout + proc.stderr).splitlines():
        print(line, file=sys.stderr)


def prepare_engine() -> bool:
    """Install an engine when none answers and start it; True if this call started dockerd
    (then ``stop_engine`` ends it). ComposeUnavailable with the set-up's reason if it can't."""
    if sys.platform != "linux":
        raise ComposeUnavailable(f"the compose backend runs on Linux (this is {sys.platform}): "
                                 "its host reaches the pods on docker's bridge network")
    for command in ("install", "start"):
        proc = _script(command)
        _say(proc)
        if proc.returncode != 0:
            reason = (proc.stderr.strip() or proc.stdout.strip()).splitlines()
            raise ComposeUnavailable(f"scripts/containers.sh {command} failed: "
                                     f"{reason[-1] if reason else proc.returncode}")
        if command == "start":
            return "engine: started dockerd" in proc.stdout
    raise AssertionError("unreachable")


def prepare_images() -> None:
    """Compose v2 and every image the generated projects name (builds what is missing or
    out of date; quick when nothing changed)."""
    for command in ("compose", "images"):
        proc = _script(command)
        _say(proc)
        if proc.returncode != 0:
            raise ComposeError(f"scripts/containers.sh {command} failed:\n"
                               f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def stop_engine() -> None:
    """End the dockerd scripts/containers.sh started (by its PID file; nothing otherwise)."""
    _say(_script("stop", timeout_s=120))


def docker(*args: str, timeout_s: float = DOCKER_TIMEOUT_S,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["docker", *args], capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    if check and proc.returncode != 0:
        raise ComposeError(f"docker {' '.join(args)}: {proc.stderr.strip()}")
    return proc


def used_subnets() -> list[ipaddress.IPv4Network]:
    """Networks docker already has and routes of this host (a new network must overlap
    neither)."""
    found: list[ipaddress.IPv4Network] = []
    ids = docker("network", "ls", "-q").stdout.split()
    if ids:
        out = docker("network", "inspect", "-f",
                     "{{range .IPAM.Config}}{{.Subnet}} {{end}}", *ids).stdout
        for word in out.split():
            net = ipaddress.ip_network(word, strict=False)
            if isinstance(net, ipaddress.IPv4Network):
                found.append(net)
    routes = subprocess.run(["ip", "-4", "route"], capture_output=True, text=True,
                            timeout=10, check=False).stdout
    for line in routes.splitlines():
        first = line.split(" ", 1)[0]
        if "/" in first:
            found.append(ipaddress.IPv4Network(first, strict=False))
    return found


def free_subnet(seed: int) -> str:
    """A /24 of 10.219.0.0/16 overlapping nothing docker or this host uses."""
    used = used_subnets()
    free = [n for n in SUBNET_POOL.subnets(new_prefix=24)
            if not any(n.overlaps(u) for u in used)]
    if not free:
        raise ComposeError(f"no free /24 in {SUBNET_POOL}")
    return str(random.Random(seed).choice(free))


# ---- the cluster ------------------------------------------------------------------------
class ComposeCluster:
    """N pods of a generated compose project and the project's Toxiproxy."""

    def __init__(self, home: Path, peers: int, *, seed: int, replicas: int = 2,
                 service_env: dict[str, str] | None = None,
                 peer_fault_plan: dict[str, Path] | None = None, **overrides: Any) -> None:
        if not peerset.MIN_PEERS <= peers <= MAX_PEERS:
            raise ValueError(f"the compose backend needs {peerset.MIN_PEERS} to {MAX_PEERS} "
                             f"peers, got {peers}")
        self.home = home
        self.count = peers
        self.seed = seed
        self.replicas = replicas
        self.service_env = dict(service_env or {})
        self.peer_fault_plan = dict(peer_fault_plan or {})
        self.overrides = overrides
        self.started_engine = False
        self.project: ComposeProject | None = None
        self.compose: Any = None  # testcontainers.compose.DockerCompose
        self.toxiproxy: ToxiproxyClient | None = None
        self.proxy_off: set[str] = set()     # peers whose proxy is disabled (cut, down)
        self.isolated: set[str] = set()      # pods disconnected from the project network
        self.paused: set[str] = set()
        self.timings: dict[str, float] = {}

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        from testcontainers.compose import DockerCompose

        t0 = time.monotonic()
        self.started_engine = prepare_engine()
        try:
            prepare_images()
            self.timings["prepare_s"] = time.monotonic() - t0
            tag = f"{os.getpid() % 100000:05d}{random.SystemRandom().randrange(36 ** 3):04x}"
            project = generator.generate(
                self.home, peers=self.count, name=f"mydrive-chaos-{tag}",
                subnet=free_subnet(self.seed), replicas=self.replicas,
                health_interval_s=HEALTH_INTERVAL_S, toxiproxy_args=[f"-seed={self.seed}"],
                **self.overrides)
            self.project = project
            if self.peer_fault_plan or self.service_env:
                generator.write_compose(project, self._model())
            self.compose = DockerCompose(context=str(project.root),
                                         compose_file_name=generator.COMPOSE_FILE, wait=False)
            t1 = time.monotonic()
            self.compose.start()
            self.toxiproxy = ToxiproxyClient(project.toxiproxy_api)
            self._wait_toxiproxy()
            self._wait_ready([p.name for p in project.peers])
        except BaseException:
            self.stop()
            raise
        self.timings["up_s"] = time.monotonic() - t1

    def _model(self) -> dict[str, Any]:
        """The generated model, with the test-bed's switches: seeded fault plans (mounted at
        the harness's own path, so the fault log is shared) and extra environment."""
        project = self._project()
        model = generator.compose_model(project, health_interval_s=HEALTH_INTERVAL_S,
                                        toxiproxy_args=[f"-seed={self.seed}"])
        for peer in project.peers:
            plan = self.peer_fault_plan.get(peer.name)
            for kind in SERVICE_KINDS:
                service = model["services"][f"{peer.name}-{kind}"]
                service["environment"] = {**service["environment"], **self.service_env}
                if plan is not None:
                    service["command"] = [*service["command"], "--fault-plan", str(plan)]
                    mount = str(plan.resolve().parent)
                    service["volumes"] = [*service["volumes"], f"{mount}:{mount}"]
        return model

    def _wait_toxiproxy(self) -> None:
        client = self._toxi()
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                client.version()
                return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise ToxiproxyError(f"the project's Toxiproxy at {client.api_url} did "
                                         f"not answer within {READY_TIMEOUT_S:.0f} s: {exc}") \
                        from None
                time.sleep(0.2)

    def stop(self) -> None:
        """``compose down -v``: containers, the network and the volumes (the project's log
        is kept in HOME/compose.log); then the engine, if ``start`` started it."""
        try:
            if self.compose is not None:
                try:
                    logs = self._compose_cmd("logs", "--no-color", "--timestamps",
                                             timeout_s=60)
                    (self.home / "compose.log").write_text(logs.stdout + logs.stderr)
                except (OSError, subprocess.SubprocessError):
                    pass
                try:
                    self.compose.stop(down=True)
                finally:
                    self.compose = None
        finally:
            if self.started_engine:
                self.started_engine = False
                stop_engine()

    def _compose_cmd(self, *args: str, timeout_s: float = DOCKER_TIMEOUT_S,
                     ) -> subprocess.CompletedProcess[str]:
        project = self._project()
        return subprocess.run(["docker", "compose", "-f", str(project.compose_file), *args],
                              cwd=project.root, capture_output=True, text=True,
                              timeout=timeout_s, check=False)

    def _project(self) -> ComposeProject:
        assert self.project is not None, "cluster not started"
        return self.project

    def _toxi(self) -> ToxiproxyClient:
        assert self.toxiproxy is not None, "cluster not started"
        return self.toxiproxy

    def container(self, peer: str, service: str | None = None) -> str:
        """The container of ``peer``'s ``service`` (None: its nginx, which owns the pod)."""
        name = peer if service is None else f"{peer}-{service}"
        return f"{self._project().name}-{name}-1"

    def pod_containers(self, peer: str) -> list[str]:
        return [self.container(peer)] + [self.container(peer, s) for s in
                                          ("couchdb", "receiver", "sender", "ui")]

    def kill(self, peer: str, service: str | None = None) -> None:
        kinds = SERVICE_KINDS if service is None else (service,)
        docker("kill", *[self.container(peer, k) for k in kinds])

    def restart(self, peer: str, *, graceful: bool = True) -> None:
        names = [self.container(peer, k) for k in SERVICE_KINDS]
        if graceful:
            docker("stop", "-t", str(STOP_TIMEOUT_S), *names, timeout_s=STOP_TIMEOUT_S + 30)
        else:
            docker("kill", *names, check=False)  # one may be down already
        self.resume(peer)

    def resume(self, peer: str) -> None:
        if peer in self.paused:
            self.unpause(peer)
        docker("start", *[self.container(peer, k) for k in SERVICE_KINDS])
        self._wait_ready([peer])

    def pause(self, peer: str) -> None:
        """Freeze every container of the pod (``docker pause``): connections hang."""
        docker("pause", *self.pod_containers(peer))
        self.paused.add(peer)

    def unpause(self, peer: str) -> None:
        docker("unpause", *self.pod_containers(peer), check=False)
        self.paused.discard(peer)

    def _ready(self, peer: str) -> bool:
        """Both services answer /healthz on their metrics ports inside the pod."""
        cfg = PeerDir(self.peer_dir(peer)).config
        ports = {"receiver": cfg.receiver_metrics_port, "sender": cfg.sender_metrics_port}
        for kind in SERVICE_KINDS:
            probe = (f"exec 3<>/dev/tcp/127.0.0.1/{ports[kind]} && "
                     "printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | "
                     "grep -q ' 200 '")
            proc = docker("exec", self.container(peer, kind), "bash", "-c", probe,
                          check=False, timeout_s=20)
            if proc.returncode != 0:
                return False
        return True

    def _wait_ready(self, peers: Iterable[str]) -> None:
        waiting = set(peers)
        deadline = time.monotonic() + READY_TIMEOUT_S
        with ThreadPoolExecutor(max_workers=4) as pool:
            while waiting:
                done = {p for p, ok in zip(sorted(waiting),
                                           pool.map(self._ready, sorted(waiting)), strict=True)
                        if ok}
                waiting -= done
                if not waiting:
                    return
                if time.monotonic() > deadline:
                    raise PeerUnavailable(
                        f"services not healthy after {READY_TIMEOUT_S:.0f} s: "
                        f"{', '.join(sorted(waiting))} (logs: docker compose -f "
                        f"{self._project().compose_file} logs)")
                time.sleep(0.3)

    # ---- network -----------------------------------------------------------------------
    def _set_proxy(self, peer: str, enabled: bool) -> None:
        self._toxi().set_enabled(peer, enabled)
        if enabled:
            self.proxy_off.discard(peer)
        else:
            self.proxy_off.add(peer)

    def isolate(self, peer: str) -> None:
        self._set_proxy(peer, False)
        if peer not in self.isolated:
            docker("network", "disconnect", "-f", self._project().network, self.container(peer))
            self.isolated.add(peer)

    def cut(self, source: str, target: str) -> None:
        self._set_proxy(target, False)

    def set_down(self, peer: str, down: bool) -> None:
        self._set_proxy(peer, not down)

    def add_toxic(self, target: str, toxic: Toxic, *, source: str | None = None,
                  service: str | None = None) -> None:
        self._toxi().add_toxic(target, toxic)

    def remove_toxic(self, target: str, name: str) -> None:
        client = self._toxi()
        if any(t.name == name for t in client.toxics(target)):
            client.remove_toxic(target, name)

    def heal(self) -> None:
        project = self._project()
        for peer in sorted(self.isolated):
            address = next(p.pod_address for p in project.peers if p.name == peer)
            docker("network", "connect", "--ip", address, "--alias", peer, project.network,
                   self.container(peer))
        self.isolated.clear()
        for peer in sorted(self.paused):
            self.unpause(peer)
        self._toxi().reset()
        self.proxy_off.clear()

    # ---- what is where -----------------------------------------------------------------
    def peers(self) -> list[ChaosPeer]:
        out = []
        for p in self._project().peers:
            address = p.advertised_address
            out.append(ChaosPeer(name=p.name, peer_id=p.peer_id, receiver_address=address,
                                 sender_address=address))
        return out

    def dialed_address(self, source: str, target: str, service: str) -> str:
        assert service in SERVICE_KINDS
        return next(p.advertised_address for p in self._project().peers if p.name == target)

    def _states(self, names: list[str]) -> dict[str, tuple[bool, bool]]:
        proc = docker("inspect", "-f", "{{.Name}} {{.State.Running}} {{.State.Paused}}",
                      *names, check=False)
        states = {}
        for line in proc.stdout.splitlines():
            name, running, paused = line.split()
            states[name.lstrip("/")] = (running == "true", paused == "true")
        return states

    def running(self, peer: str) -> bool:
        names = [self.container(peer), *[self.container(peer, k) for k in SERVICE_KINDS]]
        states = self._states(names)
        return all(states.get(n, (False, False)) == (True, False) for n in names)

    def running_services(self) -> dict[str, bool]:
        peers = [p.name for p in self._project().peers]
        names = [self.container(p, k) for p in peers for k in SERVICE_KINDS]
        states = self._states(names)
        return {p: all(states.get(self.container(p, k), (False, False))[0]
                       for k in SERVICE_KINDS) for p in peers}

    def reachable(self, source: str, target: str) -> bool:
        return (self.running(target) and target not in self.proxy_off
                and target not in self.isolated and source not in self.isolated)

    def peer_dir(self, peer: str) -> Path:
        return self._project().root / "peers" / peer

    def peer_config(self, peer: str) -> PeerDir:
        return PeerDir(self.peer_dir(peer))

    def run_cli(self, peer: str, args: list[str], *, env: dict[str, str],
                log_path: Path) -> subprocess.Popen[bytes]:
        """``mydrive ARGS`` on the host with ``--peer HOME/peers/PEER``, as a user runs it.

        ``get`` runs with ``--local``: the download then happens in this process on the host,
        as on the other backends (the harness kills it, watches its partial files and reads
        its ``--out`` directory). Without it ``get`` becomes a job of the pod's receiver, which
        sees only the peer directory: an ``--out`` outside it is refused (docs/deploy.md)."""
        if args[:1] == ["get"] and "--local" not in args:
            args = [*args, "--local"]
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "mydrive", *args[:1], "--peer", str(self.peer_dir(peer)),
                 *args[1:]],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
                env={**os.environ, **env})
