"""Content digests: chunk ids and segment checks.

The algorithm is named (``alg``) wherever a digest is stored or sent, so that it can change
without guessing; BLAKE3 is the default because it is several times faster than SHA-256 on one
core. Digests here are integrity checks against accidents and corrupt replicas; secrecy and
authenticity come from AES-GCM and signatures in ``mydrive.crypto.primitives``.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Protocol

import blake3

from mydrive.errors import BadRequest

DIGEST_ALG = "blake3"
DIGEST_BYTES = 32


class _HashState(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...

    def digest(self) -> bytes: ...


def _new_blake3() -> _HashState:
    # Default max_threads (1): callers hash many chunks in parallel, not one hash on many cores.
    state: _HashState = blake3.blake3()
    return state


# Adding an algorithm means adding a row here; every row must give DIGEST_BYTES bytes.
_ALGORITHMS: dict[str, Callable[[], _HashState]] = {
    "blake3": _new_blake3,
}


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


def digests_equal(a: bytes, b: bytes) -> bool:
    """Compare digests in constant time (a peer-supplied digest must not leak via timing)."""
    return hmac.compare_digest(a, b)
