"""The receiver's logic for one StoreChunk stream, independent of gRPC.

Protocol (docs/protocol.md): header → Held (segments to skip) → rounds of segments, each
ended by RoundEnd and answered with the bad/missing indices; an empty answer means the
chunk was verified whole, fsynced and committed. Once a chunk is committed (or its header
was answered "held, committed") the same stream may carry the next chunk's header, up to
MAX_CHUNKS_PER_STREAM chunks; every chunk is checked exactly as if it had a stream of its own.
"""

from __future__ import annotations

from mydrive.errors import BadRequest
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.runtime.metrics import Metrics
from mydrive.storage.chunkstore import ChunkStore, PendingChunk
from mydrive.transport.base import Held

MAX_ROUNDS = 16  # a sender that keeps sending bad data is cut off
# Chunks one stream may carry. A stream is admitted once (stream limits, caller identity)
# and holds a worker thread and one of its caller's stream slots while it lives: the cap
# hands both back and decides admission again every 64 chunks (256 MiB of 4 MiB chunks),
# not once for an upload of any length, whatever the sender does (the gRPC client stops
# reusing a stream after a quarter of its deadline anyway). Every chunk is checked the same
# without it; its cost is one new call per 64 chunks, against one per chunk before.
MAX_CHUNKS_PER_STREAM = 64


def describe_receiver_metrics(metrics: Metrics) -> None:
    metrics.describe("receiver_segments_received_total", "segments received from senders")
    metrics.describe("receiver_segments_rejected_total", "segments that failed verification")
    metrics.describe("receiver_bytes_received_total", "segment bytes received")
    metrics.describe("receiver_chunks_committed_total", "chunks verified and committed")
    metrics.describe("receiver_streams_total",
                     "StoreChunk streams admitted (each carries one chunk or more)")
    metrics.describe("receiver_streams_refused_total",
                     "StoreChunk streams refused by the per-peer or total stream limit")
    metrics.describe("receiver_streams_idle_ended_total",
                     "StoreChunk streams ended for sending nothing within the idle timeout")


class ReceiverSession:
    """One StoreChunk stream: at most one chunk open at a time, and a new header only once
    the open one is committed."""

    def __init__(self, store: ChunkStore, metrics: Metrics) -> None:
        self.store = store
        self.metrics = metrics
        self._pending: PendingChunk | None = None
        self._chunks = 0  # headers this stream has carried
        self._rounds = 0
        self._rejected_this_round: set[int] = set()

    def start(self, header: ChunkHeader) -> Held:
        """Begin (or resume) the stream's next chunk; BadRequest while a chunk is still open
        (not committed) on it, or once it has carried MAX_CHUNKS_PER_STREAM chunks."""
        if self._pending is not None:
            raise BadRequest("a chunk header came before the stream's open chunk was "
                             "committed; the next header may only follow a Committed answer")
        if self._chunks >= MAX_CHUNKS_PER_STREAM:
            raise BadRequest(f"a StoreChunk stream carries at most {MAX_CHUNKS_PER_STREAM} "
                             f"chunks")
        self._chunks += 1
        self._rounds = 0
        self._rejected_this_round.clear()
        pending = self.store.begin(header)
        held = Held(indices=frozenset(pending.held), committed=pending.committed)
        if pending.committed:
            pending.close()  # re-sending a committed chunk is a no-op: nothing stays open
        else:
            self._pending = pending
        return held

    @property
    def takes_next_chunk(self) -> bool:
        """Whether this stream takes another header once the current chunk is committed."""
        return self._chunks < MAX_CHUNKS_PER_STREAM

    def segment(self, index: int, data: bytes) -> None:
        pending = self._require_started()
        self.metrics.inc("receiver_segments_received_total")
        self.metrics.inc("receiver_bytes_received_total", len(data))
        if not pending.write_segment(index, data):
            self.metrics.inc("receiver_segments_rejected_total")
            self._rejected_this_round.add(index)

    def end_round(self) -> list[int]:
        """The bad/missing indices, or [] once the chunk is committed (which closes it: the
        stream may then carry another header)."""
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
        self._pending = None
        pending.close()
        return []

    def close(self) -> None:
        if self._pending is not None:
            self._pending.close()
            self._pending = None

    def _require_started(self) -> PendingChunk:
        if self._pending is None:
            raise BadRequest("the first StoreChunk message must be the chunk header, and "
                             "after a committed chunk only the next chunk's header may come")
        return self._pending
