"""A peer is a directory: its config (peer.json), metadata, chunk store, downloads and logs.

  PEER_DIR/peer.json          this file's PeerConfig (docs/peer-directory.md); holds this
                              peer's own CouchDB secrets, so it is written 0600 (POSIX)
  PEER_DIR/metadata.sqlite3   embedded metadata store (default backend)
  PEER_DIR/store/             chunks held for other peers (mydrive.storage.chunkstore)
  PEER_DIR/downloads/         where fetched files land (configurable)
  PEER_DIR/logs/              service logs
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import socket
import threading
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mydrive.engine.settings import TransferSettings
from mydrive.errors import BadRequest
from mydrive.formats.chunkplan import DEFAULT_CHUNK_SIZE_BYTES, DEFAULT_SEGMENT_SIZE_BYTES
from mydrive.formats.peerdoc import PeerDocument, PeerTrust, verify_peer_document
from mydrive.metadata.base import MetadataStore
from mydrive.metadata.sqlite import SqliteStore
from mydrive.node.pki import network_trust, signer, write_secret
from mydrive.storage.chunkstore import DEFAULT_PARTIAL_TTL_S
from mydrive.storage.stream_limits import (
    DEFAULT_IDLE_TIMEOUT_S,
    DEFAULT_STREAMS_PER_PEER,
    DEFAULT_STREAMS_TOTAL,
    StreamLimitSettings,
)
from mydrive.transport.base import PeerAddress

CONFIG_NAME = "peer.json"
# Environment variables that, when set, replace peer.json's CouchDB admin credentials.
COUCHDB_CREDENTIAL_ENV = {"couchdb_user": "MYDRIVE_COUCHDB_USER",
                          "couchdb_password": "MYDRIVE_COUCHDB_PASSWORD"}
COUCHDB_ADMIN_USER = "mydrive-admin"
COUCHDB_MEMBER_USER = "mydrive-replicator"
SECRET_BYTES = 24
DEFAULT_CAPACITY_BYTES = 100 * 1024**3


@dataclass(frozen=True)
class PeerConfig:
    peer_id: str
    name: str
    host: str
    receiver_port: int
    sender_port: int
    receiver_metrics_port: int
    sender_metrics_port: int
    download_dir: str = "downloads"
    capacity_bytes: int = DEFAULT_CAPACITY_BYTES
    chunk_size_bytes: int = DEFAULT_CHUNK_SIZE_BYTES
    segment_size_bytes: int = DEFAULT_SEGMENT_SIZE_BYTES
    replicas: int = 2
    max_inflight_chunks: int = 4
    rpc_timeout_s: float = 120.0
    # Receiver limits (docs/chunk-store.md, "Limits"): concurrent uploads per calling peer
    # and in all, how long an upload may send nothing, when a partial upload is stale.
    max_streams_per_peer: int = DEFAULT_STREAMS_PER_PEER
    max_streams_total: int = DEFAULT_STREAMS_TOTAL
    stream_idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S
    partial_ttl_s: float = DEFAULT_PARTIAL_TTL_S
    metadata: str = "sqlite"
    # TLS front (issue 4): with tls on, other peers reach this one only through nginx.
    tls: bool = False
    nginx_port: int = 0        # mutual-TLS listener for peer traffic (gRPC, /couchdb/)
    ui_port: int = 0           # nginx TLS listener for the browser UI (localhost only)
    ui_backend_port: int = 0   # the UI's own WSGI server on loopback
    sftp_host: str = "127.0.0.1"  # the SFTP face (docs/sftp.md): loopback by default
    sftp_port: int = 0         # 0: no SFTP server (a peer directory made before it)
    egress_port: int = 0       # loopback: nginx adds mutual TLS to CouchDB pulls from others
    # CouchDB metadata (metadata == "couchdb", docs/metadata.md): this peer's own server.
    couchdb_port: int = 0
    couchdb_db: str = "mydrive"
    couchdb_user: str = ""
    couchdb_password: str = ""
    couchdb_advertise_url: str = ""  # how other peers' servers reach it (default host:port)
    # A member (not admin) of the database: this peer's replicator writes what it pulls as
    # this user, so no design document can arrive (only admins write those), and this
    # peer's nginx reads as this user for the other peers' pulls (docs/metadata.md).
    couchdb_member_user: str = COUCHDB_MEMBER_USER
    couchdb_member_password: str = ""

    @property
    def service_host(self) -> str:
        # Behind nginx the services are for nginx only: on their unix sockets, or on
        # loopback where there are none (Windows, a container pod, a too-long path:
        # node/service_socket.py). Without TLS (local test networks) they listen on the
        # peer's host themselves.
        return "127.0.0.1" if self.tls else self.host

    @property
    def couchdb_url(self) -> str:
        """This peer's own CouchDB server, as the peer's processes reach it."""
        return f"http://127.0.0.1:{self.couchdb_port}"

    @property
    def couchdb_public_url(self) -> str:
        """Where the other peers' servers pull from (recorded in the peer document)."""
        if self.couchdb_advertise_url:
            return self.couchdb_advertise_url
        if self.tls:  # other peers come in through nginx's mutual-TLS /couchdb/ route
            return f"https://{self.host}:{self.nginx_port}/couchdb"
        return f"http://{self.host}:{self.couchdb_port}"

    def reach_couchdb(self, url: str, peer_id: str) -> str:
        """The URL this peer's CouchDB dials to pull from ``url``, peer ``peer_id``'s server.

        CouchDB's replicator can't present our client certificate, so with TLS on it goes
        through our nginx's loopback egress listener, which makes the mutual-TLS call and
        checks the remote certificate names that peer (``formats.peerdoc.tls_name``).
        """
        parts = urlsplit(url)
        if not self.tls or parts.scheme != "https" or not parts.hostname:
            return url
        port = parts.port or 443
        path = parts.path.removeprefix("/couchdb")
        return (f"http://127.0.0.1:{self.egress_port}/remote/{parts.hostname}/{port}/"
                f"{peer_id}{path}")

    @property
    def receiver_address(self) -> str:
        return f"{self.service_host}:{self.receiver_port}"

    @property
    def sender_address(self) -> str:
        return f"{self.service_host}:{self.sender_port}"

    @property
    def nginx_address(self) -> str:
        return f"{self.host}:{self.nginx_port}"

    def address(self) -> PeerAddress:
        """Where other peers dial this one: its nginx when TLS is on, else the services."""
        if self.tls:
            return PeerAddress(peer_id=self.peer_id, receiver_address=self.nginx_address,
                               sender_address=self.nginx_address)
        return PeerAddress(peer_id=self.peer_id, receiver_address=self.receiver_address,
                           sender_address=self.sender_address)

    def stream_limits(self) -> StreamLimitSettings:
        return StreamLimitSettings(per_peer=self.max_streams_per_peer,
                                   total=self.max_streams_total,
                                   idle_timeout_s=self.stream_idle_timeout_s)

    def transfer_settings(self) -> TransferSettings:
        return TransferSettings(chunk_size_bytes=self.chunk_size_bytes,
                                segment_size_bytes=self.segment_size_bytes,
                                replicas=self.replicas,
                                max_inflight_chunks=self.max_inflight_chunks)


class PeerDir:
    def __init__(self, root: Path) -> None:
        self.root = root
        config_path = root / CONFIG_NAME
        if not config_path.exists():
            raise BadRequest(f"{root} is not a peer directory (no {CONFIG_NAME}); "
                             f"create one with: mydrive peer init {root}")
        try:
            raw: dict[str, Any] = json.loads(config_path.read_text())
            known = {f.name for f in fields(PeerConfig)}
            values = {k: v for k, v in raw.items() if k in known}
            # Containers pass the network's CouchDB credentials in the environment (from
            # their env file) rather than in peer.json (docs/deploy.md).
            for key, env in COUCHDB_CREDENTIAL_ENV.items():
                if os.environ.get(env):
                    values[key] = os.environ[env]
            self.config = PeerConfig(**values)
        except (ValueError, TypeError) as exc:
            raise BadRequest(f"{config_path} is malformed: {exc}") from exc
        _keep_private(config_path)

    @property
    def store_dir(self) -> Path:
        return self.root / "store"

    @property
    def tls_dir(self) -> Path:
        return self.root / "tls"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def download_dir(self) -> Path:
        path = Path(self.config.download_dir)
        return path if path.is_absolute() else self.root / path

    def open_metadata(self) -> MetadataStore:
        if self.config.metadata == "couchdb":
            from mydrive.metadata.couchdb import CouchStore

            c = self.config
            return CouchStore(c.couchdb_url, c.couchdb_db, user=c.couchdb_user,
                              password=c.couchdb_password)
        if self.config.metadata != "sqlite":
            raise BadRequest(f"metadata backend {self.config.metadata!r} is not available; "
                             f"expected 'sqlite' or 'couchdb'")
        return SqliteStore(self.root / "metadata.sqlite3")

    def peer_trust(self) -> PeerTrust | None:
        """Whose peer documents this peer believes: with TLS, only those signed by a
        certificate of its network CA (mydrive.formats.peerdoc); without, all (no defence)."""
        return network_trust(self.tls_dir) if self.config.tls else None


def _keep_private(path: Path) -> None:
    """peer.json holds this peer's secrets: make it 0600 if it is readable by others
    (POSIX; on Windows the directory's ACL decides, docs/peer-directory.md)."""
    if os.name != "posix":
        return
    try:
        mode = path.stat().st_mode
        if mode & 0o077:
            os.chmod(path, 0o600)
            logging.getLogger("mydrive.node.peerdir").warning(
                "%s was readable by other users; it holds secrets: made it 0600", path)
    except OSError:
        pass  # not ours to change: the services still run; docs say how to fix it


# Listening ports are chosen below the kernel's ephemeral range: a port picked there is
# bound only later (at start), and meanwhile any outgoing connection may take it.
_LISTEN_PORT_RANGE = (20000, 32767)
_PORT_ATTEMPTS = 200


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux default; Windows uses 49152-65535


# Ports this process already handed out: a peer binds its ports only when started, so
# without this two peers created by one process could be given the same free port.
_handed_out: set[int] = set()
_MAX_REMEMBERED_PORTS = 4096
_handed_out_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port free right now on ``host``, outside the ephemeral range when possible, and
    never one this process handed out before."""
    low, high = _LISTEN_PORT_RANGE
    eph_low, eph_high = _ephemeral_range()
    rng = random.SystemRandom()
    for _ in range(_PORT_ATTEMPTS):
        port = rng.randint(low, high)
        if eph_low <= port <= eph_high:
            continue
        with _handed_out_lock:
            if port in _handed_out:
                continue
            if len(_handed_out) > _MAX_REMEMBERED_PORTS:
                _handed_out.clear()  # those were bound or dropped long ago
            _handed_out.add(port)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:  # let the OS pick
        s.bind((host, 0))
        return int(s.getsockname()[1])


PortAllocator = Callable[[str], int]
"""Gives a port to listen on at a host; called once for each port a new peer needs."""
PeerIdSource = Callable[[], str]
"""Gives a new peer's id: 16 lowercase hex digits, unique in the network."""


def random_peer_id() -> str:
    """A fresh random peer id (8 bytes from the OS, hex)."""
    return os.urandom(8).hex()


def init_peer(root: Path, *, name: str | None = None, host: str = "127.0.0.1",
              network_dir: Path | None = None, ports: PortAllocator = free_port,
              new_peer_id: PeerIdSource = random_peer_id, **overrides: Any) -> PeerDir:
    """Create a peer directory with an id from ``new_peer_id`` and ports from ``ports``.

    The defaults are a random id and ports free on this machine; the test-bed hands in
    seeded ones, so the same sources make the same peer.json (a port given in ``overrides``
    is used as it is). With ``network_dir`` (a network CA, see
    mydrive.node.pki) the peer gets a certificate and runs behind nginx with mutual TLS; its
    services then listen on loopback only. Its private key is random whatever the sources.
    """
    if (root / CONFIG_NAME).exists():
        raise BadRequest(f"{root} is already a peer directory")
    peer_id = new_peer_id()
    assert _PEER_ID_RE.fullmatch(peer_id), f"peer id source gave {peer_id!r}"
    root.mkdir(parents=True, exist_ok=True)
    for sub in ("store", "downloads", "logs"):
        (root / sub).mkdir(exist_ok=True)
    name = name or root.name
    loopback = "127.0.0.1"
    # Only ports that were not given are asked for, in this fixed order: ``host`` may be
    # another machine's address (a peer made on the CA machine) or a container name.
    wanted = [("receiver_port", loopback), ("sender_port", loopback),
              ("receiver_metrics_port", loopback), ("sender_metrics_port", loopback),
              ("ui_backend_port", loopback)]
    if network_dir is not None:
        from mydrive.node.pki import issue_peer_certificate

        # With TLS the id is the new certificate key's, whatever id was asked for: peer
        # documents are then bound to the certificate (mydrive.formats.peerdoc).
        peer_id = issue_peer_certificate(network_dir, root / "tls", peer_name=name,
                                         hosts=[host, loopback, "localhost"])
        overrides = {"tls": True, **overrides}
        wanted += [("nginx_port", host), ("ui_port", host), ("egress_port", loopback)]
    if overrides.get("metadata") == "couchdb":
        wanted.append(("couchdb_port", loopback))
    wanted.append(("sftp_port", loopback))
    for key, where in wanted:
        if not overrides.get(key):
            overrides[key] = ports(where)
    if overrides.get("metadata") == "couchdb":
        overrides = {**new_couchdb_secrets(), **overrides}
    config = PeerConfig(peer_id=peer_id, name=name, host=host, **overrides)
    write_secret(root / CONFIG_NAME, json.dumps(asdict(config), indent=2).encode())
    peer = PeerDir(root)
    if config.metadata == "couchdb":
        return peer  # its server is not running yet: whoever starts it registers the peer
    with closing(peer.open_metadata()) as store:
        register_peer(store, peer)
    return peer


def new_couchdb_secrets() -> dict[str, str]:
    """This peer's own CouchDB admin and member credentials: random, never shared."""
    return {"couchdb_user": COUCHDB_ADMIN_USER,
            "couchdb_password": os.urandom(SECRET_BYTES).hex(),
            "couchdb_member_user": COUCHDB_MEMBER_USER,
            "couchdb_member_password": os.urandom(SECRET_BYTES).hex()}


def peer_document(peer: PeerDir | PeerConfig, *, updated_ms: int | None = None
                  ) -> dict[str, Any]:
    """A peer's ``peer:<id>`` document (mydrive.formats.peerdoc): how other peers reach it;
    no secrets. With TLS it carries the certificate and is signed with its key, so ``peer``
    must be the PeerDir (a bare PeerConfig is enough only without TLS)."""
    config = peer.config if isinstance(peer, PeerDir) else peer
    doc = PeerDocument(
        peer_id=config.peer_id, name=config.name,
        receiver_address=config.address().receiver_address,
        sender_address=config.address().sender_address, tls=config.tls,
        capacity_bytes=config.capacity_bytes,
        updated_ms=int(time.time() * 1000) if updated_ms is None else updated_ms,
        couchdb_url=config.couchdb_public_url if config.metadata == "couchdb" else None)
    if not config.tls:
        return doc.to_doc()
    if not isinstance(peer, PeerDir):
        raise BadRequest(f"peer {config.name} runs TLS: its document is signed with its "
                         f"certificate key, so it needs the peer directory")
    cert = (peer.tls_dir / "peer.crt").read_text()
    return replace(doc, certificate_pem=cert).signed(signer(peer.tls_dir)).to_doc()


def register_peer(store: MetadataStore, peer: PeerDir | PeerConfig) -> None:
    """Record a peer (ours or another) in a metadata store: the ``peer:<id>`` document."""
    config = peer.config if isinstance(peer, PeerDir) else peer
    store.put(f"peer:{config.peer_id}", peer_document(peer))


_PEER_ID_RE = re.compile(r"[0-9a-f]{16}")


def check_peer_document(doc: Any, trust: PeerTrust | None = None) -> dict[str, Any]:
    """Check a ``peer:`` document that came from outside (a file another machine exported).

    BadRequest names a malformed field; with ``trust`` (a TLS peer's, ``PeerDir.peer_trust``)
    PermissionDenied unless its network CA issued the certificate, the id is the certificate
    key's and the signature verifies. Returns the document unchanged when it is sound.
    """
    verify_peer_document(doc, trust)
    return dict(doc)
