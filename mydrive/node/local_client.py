"""Build a PeerClient for a peer directory: its metadata, its TLS files, a gRPC transport."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from mydrive.client import PeerClient
from mydrive.node.peerdir import PeerDir
from mydrive.node.pki import revocations, tls_files
from mydrive.runtime.clock import Clock
from mydrive.runtime.faults import NO_FAULTS, FaultHooks
from mydrive.runtime.randomness import SYSTEM_RANDOMNESS, Randomness
from mydrive.transport.base import Transport
from mydrive.transport.grpc_client import GrpcTransport


def open_client(peer_dir: Path, *, transport: Transport | None = None,
                clock: Clock | None = None, faults: FaultHooks = NO_FAULTS,
                randomness: Randomness = SYSTEM_RANDOMNESS,
                kdf_costs: Mapping[str, int] | None = None) -> PeerClient:
    """The client of the peer in ``peer_dir``; pass ``transport`` to replace gRPC (tests)."""
    peer = PeerDir(peer_dir)
    config = peer.config
    if transport is None:
        tls = tls_files(peer.tls_dir).read() if config.tls else None
        revoked = revocations(peer.tls_dir).peer_revoked if config.tls else None
        transport = GrpcTransport(rpc_timeout_s=config.rpc_timeout_s, tls=tls, revoked=revoked)
    return PeerClient(peer_id=config.peer_id, settings=config.transfer_settings(),
                      download_dir=peer.download_dir, store=peer.open_metadata(),
                      peer_trust=peer.peer_trust(),
                      transport=transport, clock=clock, faults=faults,
                      randomness=randomness, kdf_costs=kdf_costs)
