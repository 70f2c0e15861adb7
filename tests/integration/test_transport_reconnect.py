"""The gRPC transport reaches a peer again as soon as it is back (no stale reconnect backoff)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from mydrive.errors import PeerUnavailable
from mydrive.node import cluster
from mydrive.transport.grpc_client import GrpcTransport


@pytest.mark.integration
def test_transport_reaches_restarted_peer_at_once(tmp_path: Path) -> None:
    """After a peer was unreachable for a while, the first call once it is healthy succeeds."""
    home = tmp_path / "net"
    (peer,) = cluster.create(home, 1)
    cluster.start(home)
    transport = GrpcTransport(rpc_timeout_s=5.0)
    address = peer.config.address()
    try:
        assert not transport.chunk_status(address, b"\0" * 32).committed
        cluster.stop(home, hard=True)
        for _ in range(4):  # a few failures grow gRPC's reconnect backoff
            with pytest.raises(PeerUnavailable):
                transport.chunk_status(address, b"\0" * 32)
            time.sleep(0.3)
        cluster.start(home)
        assert not transport.chunk_status(address, b"\0" * 32).committed
    finally:
        transport.close()
        cluster.stop(home)
