"""A local network of N peers, each service a separate OS process on loopback ports.

State lives in ``HOME/cluster.json``: each peer's directory (absolute) and the PIDs this
tool started for it. The processes are started, recognised and stopped by
mydrive.node.supervisor, so ``down`` ends only those PIDs, and only while each still runs
the command it was started with. A crash between starting a process and writing the state
leaves that process running unrecorded (its peer's ports stay taken until it is ended by
hand); a crash after leaves the state naming processes that ``down`` or ``up`` find again.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mydrive.errors import BadRequest
from mydrive.node import supervisor
from mydrive.node.peerdir import (
    CONFIG_NAME,
    PeerDir,
    PeerIdSource,
    PortAllocator,
    free_port,
    init_peer,
    random_peer_id,
    register_peer,
)
from mydrive.node.serve import (
    SERVICES,
    metrics_url,
    serve_command,
    serve_words,
    service_healthy,
)
from mydrive.node.service_socket import record_nginx_upstream, release_sockets, service_listen
from mydrive.node.supervisor import Service
from mydrive.runtime.disk import atomic_write_bytes

STATE_NAME = "cluster.json"
MAX_PEERS = 256
HEALTH_TIMEOUT_S = 30.0
COUCHDB_DIR = "couchdb"  # a peer's pouchdb-server data, under its peer directory


@dataclass(frozen=True)
class ServiceStatus:
    kind: str
    pid: int | None
    alive: bool
    healthy: bool
    address: str
    metrics_url: str


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
           ports: PortAllocator = free_port, new_peer_id: PeerIdSource = random_peer_id,
           **overrides: Any) -> list[PeerDir]:
    """Make (or reuse) N peer directories under HOME and make every peer know every other.

    With ``tls`` the network gets a CA in HOME/pki and every peer sits behind its own nginx
    with mutual TLS (what ``mydrive cluster up`` does by default). ``ports`` and
    ``new_peer_id`` choose new peers' ports and ids (see ``init_peer``).
    """
    if not 1 <= peers <= MAX_PEERS:
        raise BadRequest(f"--peers must be between 1 and {MAX_PEERS}, got {peers}")
    home = home.resolve()  # the state names absolute directories: `down` from anywhere
    home.mkdir(parents=True, exist_ok=True)
    network_dir = None
    if tls:
        from mydrive.node.pki import CA_KEY, init_network

        network_dir = home / "pki"
        if not (network_dir / CA_KEY).exists():
            init_network(network_dir, name=f"mydrive network {home.name}")
    if overrides.get("metadata") == "couchdb" and not tls:
        # Without TLS the peers' servers pull from one another directly, as one member user
        # they share; with TLS nothing is shared (each nginx reads for the others).
        from mydrive.metadata.couchserver import network_member_credentials

        overrides = {**network_member_credentials(home), **overrides}
    dirs = []
    for i in range(peers):
        root = home / f"peer-{i}"
        if (root / CONFIG_NAME).exists():
            dirs.append(PeerDir(root))
        else:
            dirs.append(init_peer(root, name=f"peer-{i}", replicas=replicas,
                                  network_dir=network_dir, ports=ports,
                                  new_peer_id=new_peer_id, **overrides))
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
                register_peer(store, other)
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
    try:
        for entry in state["peers"]:
            if only is not None and entry["name"] not in only:
                continue
            peer = PeerDir(Path(entry["dir"]))
            if peer.config.tls:
                # This nginx reaches the services over their sockets (a container render
                # of the same directory may have said otherwise): tell them before they start.
                record_nginx_upstream(peer.root, container=False)
            for kind in kinds_of(peer):
                if kinds is not None and kind not in kinds or _running(entry, peer, kind):
                    continue
                argv = _command(peer, kind, fault_plan)
                entry["pids"][kind] = supervisor.spawn(
                    argv, log_path=peer.logs_dir / f"{kind}.log", expect=_expect(peer, kind),
                    env=env).pid
    finally:
        _write_state(home, state)  # whatever was started is recorded, even on an error
    wait_healthy(home, only=only, timeout_s=timeout_s, kinds=kinds)


def kinds_of(peer: PeerDir) -> tuple[str, ...]:
    """The processes one peer runs: its services, its UI, nginx in front when TLS is on, and
    first its CouchDB-protocol server when its metadata is on CouchDB."""
    couchdb = ("couchdb",) if peer.config.metadata == "couchdb" else ()
    nginx = ("nginx",) if peer.config.tls else ()
    sftp = ("sftp",) if peer.config.sftp_port else ()  # docs/sftp.md
    return (*couchdb, *SERVICES, "ui", *sftp, *nginx)


def _command(peer: PeerDir, kind: str, fault_plan: Path | None) -> list[str]:
    """The command line that runs one of the peer's processes (kinds_of)."""
    if kind == "nginx":
        from mydrive.node.nginx import command

        return command(peer)
    if kind == "couchdb":
        from mydrive.metadata.couchserver import peer_command

        c = peer.config
        return peer_command(peer.root / COUCHDB_DIR, port=c.couchdb_port, user=c.couchdb_user,
                            password=c.couchdb_password)
    return serve_command(kind, peer.root, fault_plan=fault_plan if kind in SERVICES else None)


def _expect(peer: PeerDir, kind: str) -> tuple[str, ...]:
    """Words the command line of the peer's ``kind`` process holds (see ``_command``)."""
    if kind == "nginx":
        from mydrive.node.nginx import prefix

        # nginx rewrites its title to "nginx: master process <binary> -p <prefix> …"
        return ("nginx:", "master", str(prefix(peer).resolve()))
    if kind == "couchdb":
        return (str(peer.root / COUCHDB_DIR / "config.json"),)
    return serve_words(kind, peer.root)


def _service(entry: dict[str, Any], peer: PeerDir, kind: str) -> Service | None:
    pid = entry["pids"].get(kind)
    return None if pid is None else Service(pid=int(pid), expect=_expect(peer, kind))


def _running(entry: dict[str, Any], peer: PeerDir, kind: str) -> bool:
    service = _service(entry, peer, kind)
    return service is not None and supervisor.is_ours(service)


def wait_healthy(home: Path, *, timeout_s: float = HEALTH_TIMEOUT_S,
                 only: list[str] | None = None, kinds: tuple[str, ...] | None = None) -> None:
    def unhealthy() -> list[str]:
        return [f"{p['name']}/{s.kind}" for p in status(home) for s in p["services"]
                if (only is None or p["name"] in only) and (kinds is None or s.kind in kinds)
                and not s.healthy]

    supervisor.wait_healthy(unhealthy, timeout_s=timeout_s)


def status(home: Path) -> list[dict[str, Any]]:
    """Every peer: name, peer_id, dir and a ServiceStatus for each of its processes."""
    out = []
    for entry in _read_state(home)["peers"]:
        peer = PeerDir(Path(entry["dir"]))
        cfg = peer.config
        services = []
        for kind in kinds_of(peer):
            alive = _running(entry, peer, kind)
            address, metrics_url, probe = _where(peer, kind)
            services.append(ServiceStatus(kind=kind, pid=entry["pids"].get(kind), alive=alive,
                                          healthy=alive and probe(), address=address,
                                          metrics_url=metrics_url))
        out.append({"name": entry["name"], "peer_id": cfg.peer_id, "dir": entry["dir"],
                    "services": services})
    return out


def _where(peer: PeerDir, kind: str) -> tuple[str, str, Callable[[], bool]]:
    """(address, metrics URL or "", health probe) of one of the peer's processes."""
    cfg = peer.config
    if kind == "nginx":
        from mydrive.node.nginx import healthy

        return cfg.nginx_address, "", lambda: healthy(peer)
    if kind == "couchdb":
        from mydrive.metadata.couchserver import is_ready

        return cfg.couchdb_public_url, "", lambda: is_ready(cfg.couchdb_url)
    if kind == "ui":
        from mydrive.node.ui_address import ui_healthy, ui_url

        return ui_url(cfg), "", lambda: ui_healthy(cfg)
    if kind == "sftp":
        from mydrive.node.sftp_address import sftp_address, sftp_healthy

        return sftp_address(cfg), "", lambda: sftp_healthy(cfg)
    address = service_listen(peer.root, cfg, kind).address  # a TLS peer's: its unix socket
    return address, metrics_url(cfg, kind), lambda: service_healthy(cfg, kind)


def stop(home: Path, *, only: list[str] | None = None, hard: bool = False,
         timeout_s: float = supervisor.STOP_TIMEOUT_S,
         kinds: tuple[str, ...] | None = None) -> None:
    """SIGTERM (or SIGKILL with ``hard``) the services this tool started, and wait.

    ``only`` limits it to the named peers and ``kinds`` to some services (e.g. ``("sender",)``).
    """
    state = _read_state(home)
    chosen = []
    for entry in state["peers"]:
        if only is not None and entry["name"] not in only:
            continue
        peer = PeerDir(Path(entry["dir"]))
        for kind in list(entry["pids"]):
            if kinds is not None and kind not in kinds:
                continue
            service = _service(entry, peer, kind)
            entry["pids"].pop(kind)
            if service is not None:
                chosen.append(service)
    _write_state(home, state)
    supervisor.stop(chosen, hard=hard, timeout_s=timeout_s)
    for entry in state["peers"]:
        if (only is None or entry["name"] in only) and not entry["pids"]:
            release_sockets(Path(entry["dir"]))
