"""The receiver's logic for one StoreChunk stream, independent of gRPC.

Protocol (docs/protocol.md): header → Held (segments to skip) → rounds of segments, each
ended by RoundEnd and answered with the bad/missing indices; an empty answer means the
chunk was verified whole, fsynced and committed.
"""

from __future__ import annotations

from mydrive.errors import BadRequest
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.runtime.metrics import Metrics
from mydrive.storage.chunkstore import ChunkStore, PendingChunk
from mydrive.transport.base import Held

MAX_ROUNDS = 16  # a sender that keeps sending bad data is cut off


def describe_receiver_metrics(metrics: Metrics) -> None:
    metrics.describe("receiver_segments_received_total", "segments received from senders")
    metrics.describe("receiver_segments_rejected_total", "segments that failed verification")
    metrics.describe("receiver_bytes_received_total", "segment bytes received")
    metrics.describe("receiver_chunks_committed_total", "chunks verified and committed")
    metrics.describe("receiver_streams_refused_total",
                     "StoreChunk streams refused by the per-peer or total stream limit")
    metrics.describe("receiver_streams_idle_ended_total",
                     "StoreChunk streams ended for sending nothing within the idle timeout")


class ReceiverSession:
    def __init__(self, store: ChunkStore, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self._pending: PendingChunk | None = None
        self._rounds = 0
        self._rejected_this_round: set[int] = set()

    def start(self, header: ChunkHeader) -> Held:
        if self._pending is not None:
            raise BadRequest("a StoreChunk stream carries exactly one header")
        self._pending = self.store.begin(header)
        return Held(indices=frozenset(self._pending.held), committed=self._pending.committed)

    def segment(self, index: int, data: bytes) -> None:
        pending = self._require_started()
        self.metrics.inc("receiver_segments_received_total")
        self.metrics.inc("receiver_bytes_received_total", len(data))
        if not pending.write_segment(index, data):
            self.metrics.inc("receiver_segments_rejected_total")
            self._rejected_this_round.add(index)

    def end_round(self) -> list[int]:
        pending = self._require_started()
        self._rounds += 1
        missing = pending.missing()
        self._rejected_this_round.clear()
        if missing:
            if self._rounds >= MAX_ROUNDS:
                raise BadRequest(f"chunk still incomplete after {MAX_ROUNDS} rounds")
            return missing
        was_committed = pending.committed
        pending.commit()
        if not was_committed:
            self.metrics.inc("receiver_chunks_committed_total")
        return []

    def close(self) -> None:
        if self._pending is not None:
            self._pending.close()
            self._pending = None

    def _require_started(self) -> PendingChunk:
        if self._pending is None:
            raise BadRequest("the first StoreChunk message must be the chunk header")
        return self._pending
