"""mydrive: a peer-to-peer encrypted file store.

The public API, for programs that embed mydrive rather than drive its CLI:

- ``open_client(peer_dir)`` -> ``PeerClient``: a user's view of the network through one peer
  (create_user, login, put, list_files, get, inspect, rm, gc, rotate_passphrase).
- ``PeerClient(...)``: the same, built from collaborators you hand it (metadata store,
  transport, clock, randomness, fault hooks), e.g. over ``MemoryTransport`` in tests.
- ``upload_file`` / ``download_file``: the owner's transfer engine, below the client.
- ``Transport`` and ``PeerAddress``: what the engine needs from a network.
- ``MydriveError`` and its subclasses in ``mydrive.errors``: one error vocabulary, mapped to
  exit codes, gRPC status codes and HTTP statuses.

Names resolve on first use, so ``import mydrive`` stays cheap (no gRPC, no cryptography)
for tools that only need a submodule. docs/architecture.md maps the packages.
"""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "open_client": "mydrive.node.local_client",
    "PeerClient": "mydrive.client",
    "upload_file": "mydrive.engine.upload",
    "download_file": "mydrive.engine.download",
    "Transport": "mydrive.transport.base",
    "PeerAddress": "mydrive.transport.base",
    "MydriveError": "mydrive.errors",
}

__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'mydrive' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
