"""Segment corruption in flight, as the chaos harness does it, with the fault log in memory.

The chaos harness switches ``mydrive.testing.faults.SeededFaults`` on with a fault plan: on
the owner's uploads (``corrupt_upload_rate``) and on the serving peers' senders
(``corrupt_serve_rate``), and reads the JSON-lines log it appends to. Here the very same
``SeededFaults`` decides (so one seed and rate corrupt the same (chunk, segment, replica)
positions on upload as on a real cluster), and ``RecordingFaults`` keeps the log as a list of
the same dicts, which ``chaos.checkers.check_resent_equals_corrupted`` reads. A checker's
own traffic is ``muted``: it is corrupted like any other but neither logged nor traced.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mydrive.runtime.faults import FaultHooks
from sim.trace import Trace

MAX_FAULT_LOG = 1_000_000


@dataclass
class FaultLog:
    trace: Trace
    now_ms: Any  # Callable[[], int]; Any keeps the dataclass free of a Clock import cycle
    entries: list[dict[str, Any]] = field(default_factory=list)
    muted: bool = False

    def add(self, point: str, chunk_id: bytes, segment: int, peer: str) -> None:
        if self.muted:
            return
        if len(self.entries) < MAX_FAULT_LOG:
            self.entries.append({"point": point, "chunk_id": chunk_id.hex(),
                                 "segment": segment, "peer": peer})
        self.trace.record("sim.corrupt", t_ms=self.now_ms(), point=point,
                          chunk=chunk_id.hex()[:12], segment=segment, peer=peer)


class RecordingFaults:
    """``FaultHooks`` that ask ``inner`` and log every segment it changed."""

    def __init__(self, inner: FaultHooks, log: FaultLog) -> None:
        self.inner = inner
        self.log = log

    def upload_segment(self, data: bytes | memoryview, *, chunk_id: bytes, chunk_index: int,
                       segment_index: int, replica: int, peer_id: str,
                       attempt: int) -> bytes | memoryview:
        out = self.inner.upload_segment(data, chunk_id=chunk_id, chunk_index=chunk_index,
                                        segment_index=segment_index, replica=replica,
                                        peer_id=peer_id, attempt=attempt)
        if out != data:
            self.log.add("upload", chunk_id, segment_index, peer_id)
        return out

    def serve_segment(self, data: bytes, *, chunk_id: bytes, segment_index: int,
                      peer_id: str, nonce: bytes) -> bytes:
        out = self.inner.serve_segment(data, chunk_id=chunk_id, segment_index=segment_index,
                                       peer_id=peer_id, nonce=nonce)
        if out != data:
            self.log.add("serve", chunk_id, segment_index, peer_id)
        return out
