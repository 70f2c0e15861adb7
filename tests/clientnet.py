"""A network of real peer directories wired by the in-memory transport, for PeerClient tests.

Peer 0 is the users' own peer; every peer's chunk store is its directory's ``store/``, so a
test can scan each peer's disk exactly as it would on a real network.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from mydrive.client import PeerClient
from mydrive.node.local_client import open_client
from mydrive.node.peerdir import PeerDir, init_peer, register_peer
from mydrive.storage.chunkstore import ChunkStore
from mydrive.testing.clock import ManualClock
from mydrive.testing.memory_transport import MemoryTransport
from tests.strategies import FAST_KDF

SMALL_CHUNKS = {"chunk_size_bytes": 64 * 1024, "segment_size_bytes": 4 * 1024,
                "max_inflight_chunks": 3}


@dataclass
class ClientNet:
    transport: MemoryTransport
    clock: ManualClock
    dirs: list[PeerDir]

    @property
    def peer_ids(self) -> list[str]:
        return [d.config.peer_id for d in self.dirs]

    def client(self, i: int = 0) -> PeerClient:
        return open_client(self.dirs[i].root, transport=self.transport, clock=self.clock,
                          kdf_costs=FAST_KDF)

    def chunk_store(self, peer_id: str) -> ChunkStore:
        return self.transport.peers[peer_id].store

    def holders(self, chunk_id: bytes) -> set[str]:
        return {p for p in self.peer_ids if self.chunk_store(p).has(chunk_id)}


def client_net(root: Path, n: int = 5, *, seed: int | None = None) -> ClientNet:
    """``n`` peers on the in-memory transport; with ``seed``, their ids come from it."""
    clock = ManualClock()
    transport = MemoryTransport()
    ids = iter(f"{seed:08x}{i:08x}" for i in range(n)) if seed is not None else None
    dirs = [init_peer(root / f"peer-{i}", name=f"peer-{i}", **SMALL_CHUNKS,
                      **({"new_peer_id": ids.__next__} if ids is not None else {}))
            for i in range(n)]
    for d in dirs:
        transport.add_peer(d.config.peer_id, d.store_dir, clock=clock)
    with closing(dirs[0].open_metadata()) as store:
        for d in dirs:
            register_peer(store, d.config)
    return ClientNet(transport=transport, clock=clock, dirs=dirs)
