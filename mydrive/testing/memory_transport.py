"""An in-memory Transport: peers are ChunkStores in this process (unit tests, no sockets).

It runs the very same receiver and sender logic as the gRPC services; only the wire is
missing. Peers can be marked down to exercise failover.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mydrive.errors import PeerUnavailable
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.runtime.clock import Clock
from mydrive.runtime.faults import NO_FAULTS, FaultHooks
from mydrive.runtime.metrics import Metrics
from mydrive.storage.chunkstore import ChunkStore
from mydrive.storage.deleter import ChunkDeleter
from mydrive.storage.receiver import ReceiverSession
from mydrive.storage.sender import ChunkServer
from mydrive.transport.base import Held, PeerAddress
from mydrive.transport.signed_delete import DeleteOutcome, SignedDelete
from mydrive.transport.signed_fetch import ReplayGuard, SignedFetch


@dataclass
class MemoryPeer:
    store: ChunkStore
    server: ChunkServer
    metrics: Metrics = field(default_factory=Metrics)
    deleter: ChunkDeleter | None = None


class MemoryTransport:
    def __init__(self) -> None:
        self.peers: dict[str, MemoryPeer] = {}
        self.down: set[str] = set()

    def add_peer(self, peer_id: str, root: Path, *, clock: Clock, capacity_bytes: int = 2**40,
                 faults: FaultHooks = NO_FAULTS) -> PeerAddress:
        store = ChunkStore(root, capacity_bytes=capacity_bytes)
        metrics = Metrics()
        server = ChunkServer(store, peer_id=peer_id, clock=clock, replay_guard=ReplayGuard(),
                             metrics=metrics, faults=faults)
        deleter = ChunkDeleter(store, peer_id=peer_id, clock=clock, replay_guard=ReplayGuard(),
                               metrics=metrics)
        self.peers[peer_id] = MemoryPeer(store=store, server=server, metrics=metrics,
                                         deleter=deleter)
        return PeerAddress(peer_id=peer_id, receiver_address=f"mem:{peer_id}",
                           sender_address=f"mem:{peer_id}")

    def _peer(self, address: PeerAddress) -> MemoryPeer:
        if address.peer_id in self.down or address.peer_id not in self.peers:
            raise PeerUnavailable(f"peer {address.peer_id} is unreachable")
        return self.peers[address.peer_id]

    def open_store(self, peer: PeerAddress) -> _MemoryStoreSession:
        target = self._peer(peer)
        return _MemoryStoreSession(self, peer, ReceiverSession(target.store, target.metrics))

    def chunk_status(self, peer: PeerAddress, chunk_id: bytes, *,
                     timeout_s: float | None = None) -> Held:
        store = self._peer(peer).store
        if store.has(chunk_id):
            count = store.header(chunk_id).segment_count
            return Held(indices=frozenset(range(count)), committed=True)
        return Held(indices=frozenset(), committed=False)

    def fetch(self, peer: PeerAddress, signed: SignedFetch) -> Iterator[tuple[int, bytes]]:
        server = self._peer(peer).server
        for item in server.fetch(signed):
            if peer.peer_id in self.down:  # died mid-stream
                raise PeerUnavailable(f"peer {peer.peer_id} went away during the fetch")
            yield item

    def delete_chunks(self, peer: PeerAddress, signed: SignedDelete) -> DeleteOutcome:
        deleter = self._peer(peer).deleter
        assert deleter is not None
        return deleter.delete(signed)


class _MemoryStoreSession:
    """One store stream: like the gRPC one it carries chunk after chunk while the receiver
    session takes them (``reusable``)."""

    def __init__(self, transport: MemoryTransport, peer: PeerAddress,
                 session: ReceiverSession) -> None:
        self.transport = transport
        self.peer = peer
        self.session = session
        self._stored = False
        self._failed = False

    @property
    def reusable(self) -> bool:
        return self._stored and not self._failed and self.session.takes_next_chunk

    def _check_up(self) -> None:
        if self.peer.peer_id in self.transport.down:
            self._failed = True
            raise PeerUnavailable(f"peer {self.peer.peer_id} went away during the upload")

    def start(self, header: ChunkHeader) -> Held:
        self._stored = False
        self._check_up()
        try:
            held = self.session.start(header)
        except BaseException:
            self._failed = True
            raise
        self._stored = held.committed
        return held

    def send_round(self, segments: Iterable[tuple[int, bytes | memoryview]]) -> list[int]:
        try:
            for index, data in segments:
                self._check_up()
                # The receiver gets its own copy, as over a wire: the sender reuses its buffer.
                self.session.segment(index, bytes(data))
            self._check_up()
            bad = self.session.end_round()
        except BaseException:
            self._failed = True
            raise
        self._stored = not bad
        return bad

    def close(self) -> None:
        self._failed = True
        self.session.close()
