"""N peers made on one machine for a container deployment: the network CA, the peer
directories and their public peer documents.

``mydrive compose generate`` (mydrive.node.compose) and ``mydrive kubernetes generate``
(mydrive.node.kubernetes) both start here; they differ only in where each peer is dialed
(its ``host``, which goes into its certificate) and on which ports.

  OUT/pki/                the network CA; ca.key never leaves this directory
  OUT/peers/NAME/         one peer directory per peer (its key, certificate, peer.json)
  OUT/public/NAME.json    the peers' public documents, for the introductions
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mydrive.errors import BadRequest
from mydrive.node.peerdir import PeerDir, init_peer, peer_document
from mydrive.node.pki import init_network
from mydrive.runtime.disk import atomic_write_bytes

MIN_PEERS = 4   # R = 2 without any peer holding a whole file (docs/placement.md)
MAX_PEERS = 64
PKI_DIR = "pki"
PEERS_DIR = "peers"
PUBLIC_DIR = "public"
_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")


@dataclass(frozen=True)
class PeerPlan:
    """What one peer is made with: its name, where the others dial it, its ports."""

    name: str
    host: str
    nginx_port: int
    ui_port: int
    couchdb_port: int


def check_peer_count(peers: int) -> None:
    if not MIN_PEERS <= peers <= MAX_PEERS:
        raise BadRequest(f"--peers must be between {MIN_PEERS} and {MAX_PEERS} (with R = 2 "
                         f"replicas, fewer than {MIN_PEERS} peers can't store a file without one "
                         f"peer holding all of it), got {peers}")


def check_empty(out: Path) -> Path:
    """``out`` resolved; refused unless it is empty or absent (nothing is ever overwritten)."""
    if out.exists() and any(out.iterdir()):
        raise BadRequest(f"{out} is not empty: generate into a new directory")
    return out.resolve()


def project_name(out: Path, name: str | None) -> str:
    """``name``, or ``mydrive-<OUT's name>``: lowercase letters, digits, '-' and '_'."""
    name = re.sub(r"[^a-z0-9_-]", "-", (name or f"mydrive-{out.name}").lower())
    if not _NAME_RE.fullmatch(name):
        raise BadRequest(f"project name {name!r}: lowercase letters, digits, '-' and '_' only")
    return name


def make_peer_set(out: Path, plans: Sequence[PeerPlan], *, network_name: str,
                  replicas: int, **overrides: Any) -> list[PeerDir]:
    """The CA in OUT/pki, a CouchDB-backed peer directory per plan, their documents."""
    init_network(out / PKI_DIR, name=network_name)
    made = []
    for plan in plans:
        peer = init_peer(out / PEERS_DIR / plan.name, name=plan.name, host=plan.host,
                         network_dir=out / PKI_DIR, metadata="couchdb", replicas=replicas,
                         couchdb_port=plan.couchdb_port, nginx_port=plan.nginx_port,
                         ui_port=plan.ui_port, **overrides)
        public = out / PUBLIC_DIR / f"{plan.name}.json"
        public.parent.mkdir(exist_ok=True)
        atomic_write_bytes(public, json.dumps(peer_document(peer), indent=2).encode())
        made.append(peer)
    return made
