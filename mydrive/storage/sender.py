"""The sender's logic for serving a chunk back to its owner, independent of gRPC."""

from __future__ import annotations

from collections.abc import Iterator

from mydrive.errors import BadRequest
from mydrive.runtime.clock import Clock
from mydrive.runtime.faults import NO_FAULTS, FaultHooks
from mydrive.runtime.metrics import Metrics
from mydrive.storage.chunkstore import ChunkStore
from mydrive.transport.envelope import ReplayGuard
from mydrive.transport.signed_fetch import (
    SignedFetch,
    VerifiedDelegations,
    authorize,
    parse_fetch,
)


def describe_sender_metrics(metrics: Metrics) -> None:
    metrics.describe("sender_fetches_total", "authorized fetch requests served")
    metrics.describe("sender_fetches_refused_total", "fetch requests refused")
    metrics.describe("sender_segments_served_total", "segments served to owners")
    metrics.describe("sender_bytes_served_total", "segment bytes served to owners")


class ChunkServer:
    def __init__(self, store: ChunkStore, *, peer_id: str, clock: Clock,
                 replay_guard: ReplayGuard, metrics: Metrics,
                 faults: FaultHooks = NO_FAULTS) -> None:
        self.store = store
        self.peer_id = peer_id
        self.clock = clock
        self.replay_guard = replay_guard
        self.metrics = metrics
        self.faults = faults
        self.delegations = VerifiedDelegations()

    def fetch(self, signed: SignedFetch) -> Iterator[tuple[int, bytes]]:
        """Check the request completely, then stream the asked-for segments.

        Everything is checked before the first segment is yielded, so a refused request
        gets its error as the status of the call, not half a chunk.
        """
        try:
            request = parse_fetch(signed)
            header = self.store.header(request.chunk_id)
            authorize(signed, request, owner_public_key=header.owner_public_key,
                      my_peer_id=self.peer_id, clock=self.clock, replay_guard=self.replay_guard,
                      delegations=self.delegations)
            indices = request.segment_indices or tuple(range(header.segment_count))
            if any(not 0 <= i < header.segment_count for i in indices):
                raise BadRequest(f"segment index out of range 0..{header.segment_count - 1}")
        except Exception:
            self.metrics.inc("sender_fetches_refused_total")
            raise
        self.metrics.inc("sender_fetches_total")
        return self._stream(request.chunk_id, indices, request.nonce)

    def _stream(self, chunk_id: bytes, indices: tuple[int, ...],
                nonce: bytes) -> Iterator[tuple[int, bytes]]:
        for index, data in self.store.read_segments(chunk_id, indices):
            data = self.faults.serve_segment(data, chunk_id=chunk_id, segment_index=index,
                                             peer_id=self.peer_id, nonce=nonce)
            self.metrics.inc("sender_segments_served_total")
            self.metrics.inc("sender_bytes_served_total", len(data))
            yield index, data
