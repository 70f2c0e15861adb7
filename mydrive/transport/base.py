"""How the upload/download engine talks to other peers, independent of gRPC.

``mydrive.transport.grpc_client`` is the real implementation;
``mydrive.testing.memory_transport`` wires peers together in memory for unit tests; the
simulator brings its own. Implementations raise mydrive.errors classes: PeerUnavailable
when a peer cannot be reached, and whatever the remote peer answered (PermissionDenied,
ChunkNotFound, BadRequest, TooLarge, DataLoss).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from mydrive.formats.chunkheader import ChunkHeader
from mydrive.transport.signed_delete import DeleteOutcome, SignedDelete
from mydrive.transport.signed_fetch import SignedFetch


@dataclass(frozen=True)
class PeerAddress:
    peer_id: str
    receiver_address: str  # host:port of its Receiver service (or its nginx)
    sender_address: str    # host:port of its Sender service (or its nginx)


@dataclass(frozen=True)
class Held:
    """What a receiver already has of a chunk."""

    indices: frozenset[int]
    committed: bool


class StoreSession(Protocol):
    """One StoreChunk exchange with one receiver."""

    def start(self, header: ChunkHeader) -> Held:
        """Announce the chunk; learn which segments to skip."""
        ...

    def send_round(self, segments: Iterable[tuple[int, bytes]]) -> list[int]:
        """Send segments, end the round; the bad/missing indices, or [] once committed."""
        ...

    def close(self) -> None: ...


class Transport(Protocol):
    def open_store(self, peer: PeerAddress) -> StoreSession: ...

    def chunk_status(self, peer: PeerAddress, chunk_id: bytes, *,
                     timeout_s: float | None = None) -> Held:
        """What the peer holds of a chunk (resume); also the cheap "are you there" probe."""
        ...

    def fetch(self, peer: PeerAddress, signed: SignedFetch
              ) -> Iterator[tuple[int, bytes | memoryview]]:
        """Stream (segment index, data) of a chunk; the caller verifies every segment (and
        copies what it keeps: a view may be of the transport's own message)."""
        ...

    def delete_chunks(self, peer: PeerAddress, signed: SignedDelete) -> DeleteOutcome:
        """Ask a peer's receiver to remove chunks (owner-signed; docs/deletion.md)."""
        ...
