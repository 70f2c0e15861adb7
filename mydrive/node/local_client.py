"""Build a PeerClient for a peer directory: its metadata, its TLS files, a gRPC transport."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, cast

from mydrive.client import PeerClient
from mydrive.node.peerdir import PeerConfig, PeerDir
from mydrive.node.pki import revocations, tls_files
from mydrive.runtime.clock import Clock
from mydrive.runtime.faults import NO_FAULTS, FaultHooks
from mydrive.runtime.randomness import SYSTEM_RANDOMNESS, Randomness
from mydrive.transport.base import Transport


class TransportOnFirstUse:
    """A transport built on its first call: a command that never talks to another peer
    (``ls``, ``inspect``, ``user create``) does not import gRPC (~70 ms a start)."""

    def __init__(self, build: Callable[[], Transport]) -> None:
        self._build = build
        self._built: Transport | None = None
        self._lock = threading.Lock()  # the engine's workers may make the first call at once

    def _transport(self) -> Transport:
        with self._lock:
            if self._built is None:
                self._built = self._build()
            return self._built

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # not the transport's: e.g. copy probing before __init__
            raise AttributeError(name)
        return getattr(self._transport(), name)

    def close(self) -> None:
        close = getattr(self._built, "close", None)  # never built: nothing to close
        if close is not None:
            close()


def grpc_transport(peer: PeerDir, config: PeerConfig) -> Transport:
    """The peer's gRPC transport to the others; its TLS files and revocation list are read
    (and verified) now, so a client keeps the list it started with (docs/tls.md)."""
    tls = tls_files(peer.tls_dir).read() if config.tls else None
    revoked = revocations(peer.tls_dir).peer_revoked if config.tls else None

    def build() -> Transport:
        from mydrive.transport.grpc_client import GrpcTransport  # gRPC: ~70 ms to import

        return GrpcTransport(rpc_timeout_s=config.rpc_timeout_s, tls=tls, revoked=revoked)

    return cast(Transport, TransportOnFirstUse(build))


def open_client(peer_dir: Path, *, transport: Transport | None = None,
                clock: Clock | None = None, faults: FaultHooks = NO_FAULTS,
                randomness: Randomness = SYSTEM_RANDOMNESS,
                kdf_costs: Mapping[str, int] | None = None) -> PeerClient:
    """The client of the peer in ``peer_dir``; pass ``transport`` to replace gRPC (tests)."""
    peer = PeerDir(peer_dir)
    config = peer.config
    if transport is None:
        transport = grpc_transport(peer, config)
    return PeerClient(peer_id=config.peer_id, settings=config.transfer_settings(),
                      download_dir=peer.download_dir, store=peer.open_metadata(),
                      peer_trust=peer.peer_trust(),
                      transport=transport, clock=clock, faults=faults,
                      randomness=randomness, kdf_costs=kdf_costs)
