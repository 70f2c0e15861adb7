"""The fetch delegation: an owner's signed permission for one peer to fetch some chunks.

A download job runs on the owner's own peer (docs/jobs.md), which does not hold the owner's
identity key. The client signs a delegation with that key instead: these chunk ids, fetched
by this peer (its peer id and its delegate public key), until this time. The peer then signs
each fetch request with its own delegate key and attaches the delegation; other peers'
senders check both (mydrive.transport.signed_fetch.authorize_delegated).

This module owns the byte layout only (docs/delegation.md); signing and verification live in
mydrive.transport.signed_fetch, the only place that knows the signing context. Pure data:
nothing here writes anything, so a crash leaves nothing behind.

Layout (big-endian), version 1::

    b"MDDG" | version u8 | issued_ms u64 | not_after_ms u64
    | owner_public_key 32 | delegate_public_key 32
    | delegate_peer_id_len u16 | delegate_peer_id utf-8
    | chunk_count u32 | chunk ids, 32 bytes each, sorted, unique
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

from mydrive.errors import BadRequest
from mydrive.formats.digest import DIGEST_BYTES

MAGIC = b"MDDG"
DELEGATION_VERSION = 1
PUBLIC_KEY_BYTES = 32
SIGNATURE_BYTES = 64
# A delegation's chunk list travels with every fetch, so it is bounded: 4096 ids are 128 KiB,
# 16 GiB of file at the default 4 MiB chunk. A larger job carries several delegations.
MAX_DELEGATION_CHUNKS = 4096
MAX_PEER_ID_BYTES = 256
# The longest a delegation may be valid; senders refuse longer ones whatever they say.
MAX_DELEGATION_LIFETIME_MS = 24 * 3600 * 1000
_FIXED = struct.Struct(">4sBQQ")
MAX_DELEGATION_BYTES = (_FIXED.size + 2 * PUBLIC_KEY_BYTES + 2 + MAX_PEER_ID_BYTES + 4
                        + MAX_DELEGATION_CHUNKS * DIGEST_BYTES + SIGNATURE_BYTES)


@dataclass(frozen=True)
class Delegation:
    """What the owner allows: ``delegate_peer_id`` (holding ``delegate_public_key``'s private
    half) may fetch exactly ``chunk_ids`` until ``not_after_ms``."""

    owner_public_key: bytes
    delegate_public_key: bytes
    delegate_peer_id: str
    chunk_ids: tuple[bytes, ...]  # sorted, unique
    issued_ms: int
    not_after_ms: int

    def validate(self) -> Delegation:
        if len(self.owner_public_key) != PUBLIC_KEY_BYTES:
            raise BadRequest(f"delegation owner key must be {PUBLIC_KEY_BYTES} bytes")
        if len(self.delegate_public_key) != PUBLIC_KEY_BYTES:
            raise BadRequest(f"delegation delegate key must be {PUBLIC_KEY_BYTES} bytes")
        peer_id = self.delegate_peer_id.encode("utf-8")
        if not 0 < len(peer_id) <= MAX_PEER_ID_BYTES:
            raise BadRequest(f"delegation peer id must be 1..{MAX_PEER_ID_BYTES} bytes")
        if not 0 < len(self.chunk_ids) <= MAX_DELEGATION_CHUNKS:
            raise BadRequest(f"a delegation names 1..{MAX_DELEGATION_CHUNKS} chunks, "
                             f"not {len(self.chunk_ids)}")
        if any(len(c) != DIGEST_BYTES for c in self.chunk_ids):
            raise BadRequest(f"every delegated chunk id must be {DIGEST_BYTES} bytes")
        if any(a >= b for a, b in zip(self.chunk_ids, self.chunk_ids[1:], strict=False)):
            raise BadRequest("delegated chunk ids must be sorted and unique")
        if not 0 <= self.issued_ms < self.not_after_ms:
            raise BadRequest("a delegation must expire after it is issued")
        if self.not_after_ms - self.issued_ms > MAX_DELEGATION_LIFETIME_MS:
            raise BadRequest(f"a delegation may last at most {MAX_DELEGATION_LIFETIME_MS} ms")
        return self

    def covers(self, chunk_id: bytes) -> bool:
        """Whether ``chunk_id`` is one of the delegated chunks (binary search)."""
        at = bisect_left(self.chunk_ids, chunk_id)
        return at < len(self.chunk_ids) and self.chunk_ids[at] == chunk_id

    def encode(self) -> bytes:
        self.validate()
        peer_id = self.delegate_peer_id.encode("utf-8")
        return b"".join([
            _FIXED.pack(MAGIC, DELEGATION_VERSION, self.issued_ms, self.not_after_ms),
            self.owner_public_key, self.delegate_public_key,
            struct.pack(">H", len(peer_id)), peer_id,
            struct.pack(">I", len(self.chunk_ids)), *self.chunk_ids])

    @classmethod
    def decode(cls, body: bytes) -> Delegation:
        """Parse and validate ``body`` (the signed part); anything malformed is BadRequest."""
        try:
            magic, version, issued_ms, not_after_ms = _FIXED.unpack_from(body, 0)
            if magic != MAGIC:
                raise BadRequest("not a delegation (bad magic)")
            if version != DELEGATION_VERSION:
                raise BadRequest(f"unknown delegation version {version}")
            at = _FIXED.size
            owner = body[at:at + PUBLIC_KEY_BYTES]
            at += PUBLIC_KEY_BYTES
            delegate = body[at:at + PUBLIC_KEY_BYTES]
            at += PUBLIC_KEY_BYTES
            (peer_len,) = struct.unpack_from(">H", body, at)
            at += 2
            if peer_len > MAX_PEER_ID_BYTES:
                raise BadRequest("delegation peer id too long")
            peer_id = body[at:at + peer_len].decode("utf-8")
            at += peer_len
            (count,) = struct.unpack_from(">I", body, at)
            at += 4
            if count > MAX_DELEGATION_CHUNKS:
                raise BadRequest(f"a delegation names at most {MAX_DELEGATION_CHUNKS} chunks")
            if len(body) != at + count * DIGEST_BYTES:
                raise BadRequest("delegation length does not match its chunk count")
            chunk_ids = tuple(body[at + i * DIGEST_BYTES:at + (i + 1) * DIGEST_BYTES]
                              for i in range(count))
        except (struct.error, UnicodeDecodeError) as exc:
            raise BadRequest("malformed delegation") from exc
        return cls(owner_public_key=owner, delegate_public_key=delegate,
                   delegate_peer_id=peer_id, chunk_ids=chunk_ids, issued_ms=issued_ms,
                   not_after_ms=not_after_ms).validate()


@dataclass(frozen=True)
class SignedDelegation:
    """A delegation's bytes and the owner's Ed25519 signature over them (with context)."""

    body: bytes
    signature: bytes

    def encode(self) -> bytes:
        assert len(self.signature) == SIGNATURE_BYTES
        return self.body + self.signature

    @classmethod
    def decode(cls, blob: bytes) -> SignedDelegation:
        if not SIGNATURE_BYTES < len(blob) <= MAX_DELEGATION_BYTES:
            raise BadRequest("delegation has the wrong size")
        return cls(body=blob[:-SIGNATURE_BYTES], signature=blob[-SIGNATURE_BYTES:])


def scope_chunks(chunk_ids: Iterable[bytes]) -> list[tuple[bytes, ...]]:
    """Sorted, unique chunk ids cut into delegation-sized groups (for a job of any size)."""
    ordered = sorted(set(chunk_ids))
    return [tuple(ordered[i:i + MAX_DELEGATION_CHUNKS])
            for i in range(0, len(ordered), MAX_DELEGATION_CHUNKS)]
