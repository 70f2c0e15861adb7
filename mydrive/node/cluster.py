"""A local network of N peers, each service a separate OS process on loopback ports.

State lives in ``HOME/cluster.json`` (peer directories and the PIDs this tool started);
``down`` ends only those PIDs, after checking each still runs ``mydrive serve``.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mydrive.errors import BadRequest, PeerUnavailable
from mydrive.node.peerdir import CONFIG_NAME, PeerDir, init_peer, register_peer
from mydrive.node.serve import SERVICES
from mydrive.runtime.disk import atomic_write_bytes

STATE_NAME = "cluster.json"
MAX_PEERS = 256
HEALTH_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class ServiceStatus:
    kind: str
    pid: int | None
    alive: bool
    healthy: bool
    address: str
    metrics_url: str


def peer_dirs(home: Path) -> list[Path]:
    state = _read_state(home)
    return [Path(p["dir"]) for p in state.get("peers", [])]


def _read_state(home: Path) -> dict[str, Any]:
    path = home / STATE_NAME
    if not path.exists():
        return {"peers": []}
    try:
        state: dict[str, Any] = json.loads(path.read_text())
    except ValueError as exc:
        raise BadRequest(f"{path} is malformed: {exc}") from exc
    return state


def _write_state(home: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(home / STATE_NAME, json.dumps(state, indent=2).encode())


def create(home: Path, peers: int, *, replicas: int = 2, tls: bool = False,
           **overrides: Any) -> list[PeerDir]:
    """Make (or reuse) N peer directories under HOME and make every peer know every other.

    With ``tls`` the network gets a CA in HOME/pki and every peer sits behind its own nginx
    with mutual TLS (what ``mydrive cluster up`` does by default).
    """
    if not 1 <= peers <= MAX_PEERS:
        raise BadRequest(f"--peers must be between 1 and {MAX_PEERS}, got {peers}")
    home.mkdir(parents=True, exist_ok=True)
    network_dir = None
    if tls:
        from mydrive.node.pki import CA_KEY, init_network

        network_dir = home / "pki"
        if not (network_dir / CA_KEY).exists():
            init_network(network_dir, name=f"mydrive network {home.name}")
    if overrides.get("metadata") == "couchdb":
        from mydrive.metadata.couchserver import shared_credentials

        overrides = {**shared_credentials(home), **overrides}
    dirs = []
    for i in range(peers):
        root = home / f"peer-{i}"
        if (root / CONFIG_NAME).exists():
            dirs.append(PeerDir(root))
        else:
            dirs.append(init_peer(root, name=f"peer-{i}", replicas=replicas,
                                  network_dir=network_dir, **overrides))
    state = _read_state(home)
    known = {p["dir"]: p for p in state.get("peers", [])}
    state["peers"] = [known.get(str(d.root), {"dir": str(d.root), "name": d.config.name,
                                             "pids": {}}) for d in dirs]
    _write_state(home, state)
    if any(d.config.metadata == "couchdb" for d in dirs):
        start(home, kinds=("couchdb",))  # their metadata servers must run to register
    for peer in dirs:
        with closing(peer.open_metadata()) as store:
            for other in dirs:
                register_peer(store, other.config)
        if peer.config.metadata == "couchdb":
            from mydrive.node.replication import ensure_for_peer

            ensure_for_peer(peer)
    return dirs


def start(home: Path, *, env: dict[str, str] | None = None,
          only: list[str] | None = None, timeout_s: float = HEALTH_TIMEOUT_S,
          kinds: tuple[str, ...] | None = None, fault_plan: Path | None = None) -> None:
    """Start the services of every peer (or of the named peers) that are not running.

    ``kinds`` limits it to some services (e.g. ``("couchdb",)``); ``fault_plan`` (test-bed
    only) makes their sender and receiver run the seeded fault hooks of that file."""
    state = _read_state(home)
    if not state["peers"]:
        raise BadRequest(f"no cluster in {home}; run: mydrive cluster up --home {home}")
    for entry in state["peers"]:
        if only is not None and entry["name"] not in only:
            continue
        for kind in kinds_of(PeerDir(Path(entry["dir"]))):
            pid = entry["pids"].get(kind)
            if kinds is not None and kind not in kinds or (
                    pid is not None and _is_our_process(pid)):
                continue
            entry["pids"][kind] = _spawn(Path(entry["dir"]), kind, env, fault_plan)
    _write_state(home, state)
    wait_healthy(home, only=only, timeout_s=timeout_s, kinds=kinds)


def kinds_of(peer: PeerDir) -> tuple[str, ...]:
    """The processes one peer runs: its services, its UI, nginx in front when TLS is on, and
    first its CouchDB-protocol server when its metadata is on CouchDB."""
    couchdb = ("couchdb",) if peer.config.metadata == "couchdb" else ()
    nginx = ("nginx",) if peer.config.tls else ()
    return (*couchdb, *SERVICES, "ui", *nginx)


def _spawn(peer_dir: Path, kind: str, env: dict[str, str] | None,
           fault_plan: Path | None = None) -> int:
    logs = peer_dir / "logs"
    logs.mkdir(exist_ok=True)
    with open(logs / f"{kind}.log", "ab") as log:
        kwargs: dict[str, Any] = {}
        if os.name == "posix":
            kwargs["start_new_session"] = True  # Ctrl-C in the shell stops them via `down`
        else:
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP  # type: ignore[attr-defined]
        if kind == "nginx":
            from mydrive.node.nginx import command

            args = command(PeerDir(peer_dir))
        elif kind == "couchdb":
            from mydrive.metadata.couchserver import peer_command

            c = PeerDir(peer_dir).config
            args = peer_command(peer_dir / "couchdb", port=c.couchdb_port, user=c.couchdb_user,
                                password=c.couchdb_password)
        else:
            args = [sys.executable, "-m", "mydrive", "serve", kind, str(peer_dir)]
            if fault_plan is not None and kind in SERVICES:
                args += ["--fault-plan", str(fault_plan)]
        proc = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
            env={**os.environ, **(env or {})}, **kwargs)
    return proc.pid


def _is_our_process(pid: int) -> bool:
    """True if ``pid`` runs and is a ``mydrive serve`` we started (guards PID reuse)."""
    if os.name != "posix":
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        args = cmdline.read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    if stat.rsplit(")", 1)[1].split()[0] == "Z":
        return False  # a zombie is dead for our purposes
    if b"mydrive" in args and b"serve" in args:
        return True
    from mydrive.metadata.couchserver import is_pouchdb_cmdline

    if is_pouchdb_cmdline(args):
        return True
    # nginx rewrites its title to "nginx: master process <binary> -p <prefix> ..."
    return args[0].startswith(b"nginx: master process") and b"/nginx" in args[0]


def wait_healthy(home: Path, *, timeout_s: float = HEALTH_TIMEOUT_S,
                 only: list[str] | None = None, kinds: tuple[str, ...] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        bad = [f"{p['name']}/{s.kind}" for p in status(home) for s in p["services"]
               if (only is None or p["name"] in only) and (kinds is None or s.kind in kinds)
               and not s.healthy]
        if not bad:
            return
        if time.monotonic() > deadline:
            raise PeerUnavailable(f"services not healthy after {timeout_s:.0f} s: "
                                  f"{', '.join(bad)} (see their logs/ directories)")
        time.sleep(0.2)


def status(home: Path) -> list[dict[str, Any]]:
    out = []
    for entry in _read_state(home)["peers"]:
        peer = PeerDir(Path(entry["dir"]))
        cfg = peer.config
        services = []
        for kind in kinds_of(peer):
            pid = entry["pids"].get(kind)
            alive = pid is not None and _is_our_process(pid)
            if kind == "nginx":
                from mydrive.node.nginx import healthy

                services.append(ServiceStatus(kind=kind, pid=pid, alive=alive,
                                              healthy=alive and healthy(peer),
                                              address=cfg.nginx_address, metrics_url=""))
                continue
            if kind == "couchdb":
                from mydrive.metadata.couchserver import is_ready

                services.append(ServiceStatus(kind=kind, pid=pid, alive=alive,
                                              healthy=alive and is_ready(cfg.couchdb_url),
                                              address=cfg.couchdb_public_url, metrics_url=""))
                continue
            if kind == "ui":
                from mydrive.node.ui_address import ui_healthy, ui_url

                services.append(ServiceStatus(kind=kind, pid=pid, alive=alive,
                                              healthy=alive and ui_healthy(cfg),
                                              address=ui_url(cfg), metrics_url=""))
                continue
            port = cfg.receiver_metrics_port if kind == "receiver" else cfg.sender_metrics_port
            url = f"http://{cfg.service_host}:{port}/metrics"
            address = cfg.receiver_address if kind == "receiver" else cfg.sender_address
            services.append(ServiceStatus(kind=kind, pid=pid, alive=alive,
                                          healthy=alive and service_healthy(cfg.service_host, port),
                                          address=address, metrics_url=url))
        out.append({"name": entry["name"], "peer_id": cfg.peer_id, "dir": entry["dir"],
                    "services": services})
    return out


def service_healthy(host: str, port: int) -> bool:
    """GET /healthz of a service's metrics port answers 200."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/healthz", timeout=1.0) as r:  # noqa: S310
            return bool(r.status == 200)
    except (OSError, http.client.HTTPException):
        # HTTPException (e.g. BadStatusLine): something else answered on that port, such as
        # a gRPC server that took it while our service was down. Not healthy either.
        return False


def stop(home: Path, *, only: list[str] | None = None, hard: bool = False,
         timeout_s: float = 10.0, kinds: tuple[str, ...] | None = None) -> None:
    """SIGTERM (or SIGKILL with ``hard``) the services this tool started, and wait.

    ``only`` limits it to the named peers and ``kinds`` to some services (e.g. ``("sender",)``).
    """
    state = _read_state(home)
    pids = []
    for entry in state["peers"]:
        if only is not None and entry["name"] not in only:
            continue
        for kind in list(entry["pids"]):
            if kinds is not None and kind not in kinds:
                continue
            pid = entry["pids"].pop(kind)
            if _is_our_process(pid):
                pids.append(pid)
                _signal(pid, hard)
    _write_state(home, state)
    deadline = time.monotonic() + timeout_s
    for pid in pids:
        while _is_our_process(pid) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.05)
        if _is_our_process(pid):
            _signal(pid, hard=True)
        _reap(pid)


def _signal(pid: int, hard: bool) -> None:
    try:
        if os.name == "posix":
            # Each process we start leads its own session; signalling the group also ends
            # its children (nginx's workers), which would otherwise keep the ports.
            os.killpg(pid, signal.SIGKILL if hard else signal.SIGTERM)
        else:
            os.kill(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        pass


def _reap(pid: int) -> None:
    # Children of this process must be reaped or they linger as zombies.
    if os.name != "posix":
        return
    with suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
