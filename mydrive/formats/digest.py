"""Content digests: chunk ids and segment checks.

The scheme is named (``alg``) wherever a digest is stored or sent (a chunk header's and a file
record's ``digest_alg``), so that it can change without guessing. Two schemes exist; in both a
segment's digest is BLAKE3 of the segment's bytes (several times faster than SHA-256 on one
core). They differ in the chunk id:

* ``"blake3"`` (``WHOLE_CHUNK_ALG``): BLAKE3 of the whole ciphertext. Checking it hashes every
  byte a second time, after the segments.
* ``"blake3-derived"`` (``DERIVED_ID_ALG``): a domain-separated BLAKE3 over the chunk size,
  the segment size, the segment count and the segment digests (``derive_chunk_id``). The id
  commits to every digest and each digest to its segment's bytes, so it is as
  collision-resistant as the first scheme, and it is checked from the header alone, before a
  byte arrives: nobody hashes a chunk's bytes twice.

Digests here are integrity checks against accidents and corrupt replicas; secrecy and
authenticity come from AES-GCM and signatures in ``mydrive.crypto.primitives``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from typing import Protocol

import blake3

from mydrive.errors import BadRequest

WHOLE_CHUNK_ALG = "blake3"
DERIVED_ID_ALG = "blake3-derived"
# What new uploads use: receivers' commits skip the whole-chunk hash for it
# (mydrive.storage.chunkstore, ``whole_chunk_hash_needed``). Both schemes are read and
# verified everywhere, so chunks and records written under "blake3" stay valid.
DIGEST_ALG = DERIVED_ID_ALG
DIGEST_BYTES = 32
# BLAKE3's key derivation mode with a context string no other use shares: a derived chunk id
# can't equal any plain BLAKE3 digest (a segment's, or a whole chunk's under "blake3").
CHUNK_ID_CONTEXT = "mydrive 2026-11-30 chunk id from segment digests v2"


class _HashState(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...

    def digest(self) -> bytes: ...


def _new_blake3() -> _HashState:
    # Default max_threads (1): callers hash many chunks in parallel, not one hash on many cores.
    state: _HashState = blake3.blake3()
    return state


# The hash of content (a segment; the whole chunk under "blake3") per scheme. Adding a scheme
# means adding a row here; every row must give DIGEST_BYTES bytes.
_ALGORITHMS: dict[str, Callable[[], _HashState]] = {
    WHOLE_CHUNK_ALG: _new_blake3,
    DERIVED_ID_ALG: _new_blake3,
}
# The schemes whose chunk id is derived from the segment digests, not hashed from the bytes.
_DERIVED_ID_ALGS = frozenset({DERIVED_ID_ALG})


def _factory(alg: str) -> Callable[[], _HashState]:
    try:
        return _ALGORITHMS[alg]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_ALGORITHMS))
        raise BadRequest(f"unknown digest algorithm {alg!r:.40}; known: {known}") from None


def digest(data: bytes | memoryview, alg: str = DIGEST_ALG) -> bytes:
    """Return the ``DIGEST_BYTES``-byte digest of ``data`` under ``alg``."""
    state = _factory(alg)()
    state.update(data)
    out = state.digest()
    assert len(out) == DIGEST_BYTES
    return out


class Hasher:
    """Incremental digest, for data that arrives in pieces (segments of a chunk, a file)."""

    __slots__ = ("alg", "_state")

    def __init__(self, alg: str = DIGEST_ALG) -> None:
        self.alg = alg
        self._state = _factory(alg)()

    def update(self, data: bytes | memoryview) -> None:
        self._state.update(data)

    def digest(self) -> bytes:
        """Digest of everything fed so far; more ``update`` calls may follow."""
        out = self._state.digest()
        assert len(out) == DIGEST_BYTES
        return out


def whole_chunk_hash_needed(alg: str) -> bool:
    """Whether checking a chunk id under ``alg`` needs a hash of the whole chunk's bytes
    (``"blake3"``); if not, ``chunk_id_matches_digests`` checks it from the header alone."""
    _factory(alg)  # an unknown scheme is BadRequest, not a guess
    return alg not in _DERIVED_ID_ALGS


def derive_chunk_id(chunk_size_bytes: int, segment_size_bytes: int,
                    segment_digests: Sequence[bytes]) -> bytes:
    """The ``"blake3-derived"`` chunk id: keyed-by-context BLAKE3 over fixed-width fields,
    ``chunk size (u64) | segment size (u64) | segment count (u32) | digest 0 | digest 1 ...``
    (big-endian; every digest ``DIGEST_BYTES`` long), so no two cuts of a chunk encode alike."""
    if any(len(d) != DIGEST_BYTES for d in segment_digests):
        raise BadRequest(f"every segment digest must be {DIGEST_BYTES} bytes")
    state = blake3.blake3(derive_key_context=CHUNK_ID_CONTEXT)
    state.update(chunk_size_bytes.to_bytes(8, "big") + segment_size_bytes.to_bytes(8, "big")
                 + len(segment_digests).to_bytes(4, "big"))
    state.update(b"".join(segment_digests))
    out: bytes = state.digest()
    return out


def chunk_id_matches_digests(alg: str, chunk_id: bytes, chunk_size_bytes: int,
                             segment_size_bytes: int, segment_digests: Sequence[bytes]) -> bool:
    """For a scheme with derived ids: whether ``chunk_id`` is the one its cut and segment
    digests give. Never hashes the chunk's bytes: only for ``not whole_chunk_hash_needed``."""
    assert not whole_chunk_hash_needed(alg), f"{alg} ids are checked against the whole chunk"
    if not 0 <= chunk_size_bytes < 2**64 or not 0 <= segment_size_bytes < 2**64 \
            or len(segment_digests) >= 2**32:
        return False  # outside the encoding: no honest header has it
    return digests_equal(derive_chunk_id(chunk_size_bytes, segment_size_bytes,
                                         segment_digests), chunk_id)


def chunk_id_for(alg: str, ciphertext: bytes | memoryview, segment_size_bytes: int,
                 segment_digests: Sequence[bytes]) -> bytes:
    """The id of a chunk whose segments were hashed already (the uploading side): under
    ``"blake3"`` the ciphertext is hashed again, under a derived scheme it is not read."""
    if whole_chunk_hash_needed(alg):
        return digest(ciphertext, alg)
    return derive_chunk_id(len(ciphertext), segment_size_bytes, segment_digests)


def digests_equal(a: bytes, b: bytes) -> bool:
    """Compare digests in constant time (a peer-supplied digest must not leak via timing)."""
    return hmac.compare_digest(a, b)
