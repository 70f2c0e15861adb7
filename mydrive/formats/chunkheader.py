"""What a receiver knows about a chunk before its bytes arrive: the chunk header.

The same header travels on the wire (``ChunkHeader`` in proto/mydrive.proto) and is stored
with each committed chunk as JSON, in the trailer of its ``<id>.chunk`` (``<id>.meta`` in
stores of the previous layout; see docs/chunk-store.md).

How its chunk id is checked depends on ``digest_alg`` (mydrive.formats.digest): under
``"blake3-derived"`` ``validate`` checks it against the segment digests, so a receiver needs
no hash of the whole chunk (``whole_chunk_hash_needed`` is False); under ``"blake3"`` it is
the digest of the whole ciphertext and only the bytes can prove it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mydrive.errors import BadRequest, TooLarge
from mydrive.formats.digest import (
    DIGEST_BYTES,
    chunk_id_matches_digests,
    digests_equal,
    whole_chunk_hash_needed,
)

MAX_CHUNK_SIZE_BYTES = 64 * 1024 * 1024
MAX_SEGMENT_SIZE_BYTES = 4 * 1024 * 1024
MIN_SEGMENT_SIZE_BYTES = 4 * 1024
MAX_SEGMENTS = 4096
PUBLIC_KEY_BYTES = 32


@dataclass(frozen=True)
class ChunkHeader:
    chunk_id: bytes
    digest_alg: str
    owner_public_key: bytes
    chunk_size_bytes: int
    segment_size_bytes: int
    segment_digests: tuple[bytes, ...]

    @property
    def segment_count(self) -> int:
        return len(self.segment_digests)

    def segment_range(self, index: int) -> tuple[int, int]:
        assert 0 <= index < self.segment_count
        start = index * self.segment_size_bytes
        return start, min(start + self.segment_size_bytes, self.chunk_size_bytes)

    @property
    def whole_chunk_hash_needed(self) -> bool:
        """Whether the chunk id is the digest of the whole ciphertext ("blake3"): then a
        receiver must hash every byte and compare (``chunk_id_matches_whole``). Otherwise
        ``validate`` proved the id from the digests, and segments that match their digests
        are the chunk: no whole-chunk hash. Call only on a validated header."""
        return whole_chunk_hash_needed(self.digest_alg)

    def chunk_id_matches_whole(self, whole_digest: bytes) -> bool:
        """For ``whole_chunk_hash_needed``: does the whole ciphertext's digest (under
        ``digest_alg``) name this chunk?"""
        assert self.whole_chunk_hash_needed, "a derived chunk id is checked by validate()"
        return digests_equal(whole_digest, self.chunk_id)

    def validate(self, *, max_chunk_size_bytes: int = MAX_CHUNK_SIZE_BYTES) -> None:
        """Raise BadRequest/TooLarge for a header no honest sender would produce; for a
        derived chunk id, that includes an id its sizes and segment digests don't give."""
        whole_chunk_hash_needed(self.digest_alg)  # BadRequest for an unknown algorithm
        if len(self.chunk_id) != DIGEST_BYTES:
            raise BadRequest(f"chunk id must be {DIGEST_BYTES} bytes, got {len(self.chunk_id)}")
        if len(self.owner_public_key) != PUBLIC_KEY_BYTES:
            raise BadRequest("owner public key must be 32 bytes (Ed25519)")
        if self.chunk_size_bytes > max_chunk_size_bytes:
            raise TooLarge(f"chunk of {self.chunk_size_bytes} bytes exceeds the limit of "
                           f"{max_chunk_size_bytes} bytes")
        if not MIN_SEGMENT_SIZE_BYTES <= self.segment_size_bytes <= MAX_SEGMENT_SIZE_BYTES:
            raise BadRequest(f"segment size {self.segment_size_bytes} outside "
                             f"[{MIN_SEGMENT_SIZE_BYTES}, {MAX_SEGMENT_SIZE_BYTES}]")
        expected = max(1, -(-self.chunk_size_bytes // self.segment_size_bytes))
        if expected > MAX_SEGMENTS:
            raise TooLarge(f"{expected} segments exceed the limit of {MAX_SEGMENTS}")
        if self.segment_count != expected:
            raise BadRequest(f"chunk of {self.chunk_size_bytes} bytes in segments of "
                             f"{self.segment_size_bytes} needs {expected} segment digests, "
                             f"got {self.segment_count}")
        if any(len(d) != DIGEST_BYTES for d in self.segment_digests):
            raise BadRequest(f"every segment digest must be {DIGEST_BYTES} bytes")
        if not self.whole_chunk_hash_needed and not chunk_id_matches_digests(
                self.digest_alg, self.chunk_id, self.chunk_size_bytes,
                self.segment_size_bytes, self.segment_digests):
            raise BadRequest("the chunk id is not the one derived from the header's sizes "
                             "and segment digests")

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "chunk_id": self.chunk_id.hex(),
            "digest_alg": self.digest_alg,
            "owner_public_key": self.owner_public_key.hex(),
            "chunk_size_bytes": self.chunk_size_bytes,
            "segment_size_bytes": self.segment_size_bytes,
            "segment_digests": [d.hex() for d in self.segment_digests],
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ChunkHeader:
        try:
            header = cls(
                chunk_id=bytes.fromhex(doc["chunk_id"]),
                digest_alg=str(doc["digest_alg"]),
                owner_public_key=bytes.fromhex(doc["owner_public_key"]),
                chunk_size_bytes=int(doc["chunk_size_bytes"]),
                segment_size_bytes=int(doc["segment_size_bytes"]),
                segment_digests=tuple(bytes.fromhex(d) for d in doc["segment_digests"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise BadRequest(f"malformed chunk header: {exc}") from exc
        header.validate()
        return header
