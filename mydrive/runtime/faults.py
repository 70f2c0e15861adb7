"""Fault hooks: the places where the test-bed may corrupt data in transit.

Like FoundationDB's BUGGIFY, the transfer path asks a hook "what goes on the wire now?" at a
few fixed points. The product always runs with ``NO_FAULTS``, which hands the data back
untouched; the test-bed's seeded implementation (``mydrive.testing.faults.SeededFaults``) is
switched on only by an explicit argument from the harness, never by the environment.
"""

from __future__ import annotations

from typing import Protocol


class FaultHooks(Protocol):
    def upload_segment(self, data: bytes | memoryview, *, chunk_id: bytes, chunk_index: int,
                       segment_index: int, replica: int, peer_id: str,
                       attempt: int) -> bytes | memoryview:
        """The bytes of a segment an owner sends to a receiver (after announcing its digest)."""
        ...

    def serve_segment(self, data: bytes, *, chunk_id: bytes, segment_index: int,
                      peer_id: str, nonce: bytes) -> bytes:
        """The bytes of a segment a sender serves to an owner."""
        ...


class NoFaults:
    """The product's hooks: every segment passes unchanged."""

    def upload_segment(self, data: bytes | memoryview, *, chunk_id: bytes, chunk_index: int,
                       segment_index: int, replica: int, peer_id: str,
                       attempt: int) -> bytes | memoryview:
        return data

    def serve_segment(self, data: bytes, *, chunk_id: bytes, segment_index: int,
                      peer_id: str, nonce: bytes) -> bytes:
        return data


NO_FAULTS = NoFaults()
