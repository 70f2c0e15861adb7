"""Run pouchdb-server, the CouchDB-protocol server of local clusters and tests.

Installed into ``.tools/`` by scripts/install-pouchdb.sh (or found through
MYDRIVE_POUCHDB_SERVER or on PATH). Compose deployments use the official couchdb:3 image
instead; nothing here is needed there. Every peer's server has its own admin (config.json,
0600, written before the server starts); it is never shared with another peer.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from mydrive.errors import BadRequest, MetadataUnavailable

POUCHDB_ENV = "MYDRIVE_POUCHDB_SERVER"
_REPO_ROOT = Path(__file__).resolve().parents[2]
_LOCAL_BIN = _REPO_ROOT / ".tools" / "node_modules" / "pouchdb-server" / "bin" / "pouchdb-server"
READY_TIMEOUT_S = 30.0
MEMBER_USER = "mydrive-replicator"
SECRET_BYTES = 24


def find_pouchdb_server() -> Path:
    """The pouchdb-server script, or BadRequest saying how to install it."""
    configured = os.environ.get(POUCHDB_ENV)
    candidates = [Path(configured)] if configured else []
    candidates.append(_LOCAL_BIN)
    on_path = shutil.which("pouchdb-server")
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file():
            return path
    raise BadRequest(f"pouchdb-server not found (looked at {', '.join(map(str, candidates))}); "
                     f"install it with: bash scripts/install-pouchdb.sh")


def write_config(data_dir: Path, user: str, password: str) -> Path:
    """pouchdb-server's config.json: one admin (it hashes the password on start).

    Without an admin pouchdb-server runs as "admin party" (everyone is admin), so an empty
    ``user`` is refused: every peer has its own admin (mydrive.node.peerdir)."""
    if not user or not password:
        raise BadRequest("pouchdb-server needs an admin user and password (peer.json "
                         "couchdb_user / couchdb_password); without one everyone is admin")
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / "config.json"
    config: dict[str, Any] = {"admins": {user: password},
                              "log": {"file": str(data_dir / "pouchdb.log"), "level": "warning"}}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # holds a password
    with os.fdopen(fd, "w") as f:
        json.dump(config, f)
    return path


def command(data_dir: Path, host: str, port: int) -> list[str]:
    node = shutil.which("node") or "node"
    return [node, "--unhandled-rejections=warn", str(find_pouchdb_server()),
            "-o", host, "-p", str(port), "-d", str(data_dir) + os.sep,
            "-c", str(data_dir / "config.json")]


def start(data_dir: Path, *, host: str, port: int, user: str, password: str,
          log_path: Path) -> subprocess.Popen[bytes]:
    """Start pouchdb-server in its own session; the caller waits with ``wait_ready``."""
    write_config(data_dir, user, password)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(command(data_dir, host, port), cwd=data_dir,
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)


def is_ready(url: str, timeout_s: float = 1.0) -> bool:
    try:
        response = httpx.get(url.rstrip("/") + "/", timeout=timeout_s,
                             headers={"Accept": "application/json"})
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def wait_ready(url: str, *, timeout_s: float = READY_TIMEOUT_S,
               process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not is_ready(url):
        if process is not None and process.poll() is not None:
            raise MetadataUnavailable(f"pouchdb-server for {url} exited with "
                                      f"{process.returncode}; see its log")
        if time.monotonic() > deadline:
            raise MetadataUnavailable(f"pouchdb-server at {url} not ready after "
                                      f"{timeout_s:.0f} s")
        time.sleep(0.1)


def peer_command(data_dir: Path, *, port: int, user: str, password: str) -> list[str]:
    """Write the config and give the command line of one peer's pouchdb-server."""
    write_config(data_dir, user, password)
    return command(data_dir, "127.0.0.1", port)


def network_member_credentials(home: Path) -> dict[str, str]:
    """The member credentials of a local network *without TLS* (``cluster up --no-tls``):
    its peers' servers pull from one another directly as this one non-admin user, so all
    share its password (an existing peer's, or a new one). Admin passwords stay per peer.
    With TLS nothing is shared: each peer's nginx reads for the others (docs/metadata.md)."""
    for config_path in sorted(home.glob("peer-*/peer.json")):
        try:
            raw = json.loads(config_path.read_text())
        except (OSError, ValueError):
            continue
        if raw.get("couchdb_member_user") and raw.get("couchdb_member_password"):
            return {"couchdb_member_user": str(raw["couchdb_member_user"]),
                    "couchdb_member_password": str(raw["couchdb_member_password"])}
    return {"couchdb_member_user": MEMBER_USER,
            "couchdb_member_password": os.urandom(SECRET_BYTES).hex()}
