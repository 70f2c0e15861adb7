"""The signed wire bytes, pinned: a refactoring of the envelope or the document signing code
must not change one byte of what peers already sign and check (Ed25519 is deterministic, so
a fixed key, clock and nonce give fixed signatures). Values taken from the code before the
shared envelope (mydrive/transport/envelope.py) existed."""

from __future__ import annotations

import hashlib

from mydrive.crypto.primitives import IdentityKey
from mydrive.formats.delegation import Delegation
from mydrive.metadata.signed import sign_document
from mydrive.testing.clock import ManualClock
from mydrive.transport.signed_delete import sign_delete
from mydrive.transport.signed_fetch import DelegateSigner, sign_delegation, sign_fetch

OWNER = IdentityKey.from_seed(b"o" * 32)
DELEGATE = IdentityKey.from_seed(b"d" * 32)
CHUNK = bytes(range(32))
REQUEST_TAIL = "1206706565722d621880a0f1c2b1342210000102030405060708090a0b0c0d0e0f"


def _nonce(n: int) -> bytes:
    return bytes(range(n))


def test_fetch_request_and_signature_bytes() -> None:
    signed = sign_fetch(OWNER, chunk_id=CHUNK, target_peer_id="peer-b", segment_indices=[0, 3],
                        clock=ManualClock(1_800_000_000_000), random_bytes=_nonce)
    assert signed.request.hex() == "0a20" + CHUNK.hex() + REQUEST_TAIL + "2a020003"
    assert signed.signature.hex() == (
        "a9728f2d0910331f7973f46372920c2c56ddec37442396d4cacfe9156f76cac4"
        "d16aa05300876063171317fe0fe4c828f6ac1438fd16d86878810d298ceba607")
    assert signed.delegation == b""


def test_delegated_fetch_bytes() -> None:
    clock = ManualClock(1_800_000_000_000)
    delegation = sign_delegation(OWNER, Delegation(
        owner_public_key=OWNER.public_bytes(), delegate_public_key=DELEGATE.public_bytes(),
        delegate_peer_id="peer-a", chunk_ids=(CHUNK,), issued_ms=clock.now_ms(),
        not_after_ms=clock.now_ms() + 600_000))
    signed = sign_fetch(DelegateSigner(DELEGATE, [delegation]), chunk_id=CHUNK,
                        target_peer_id="peer-b", segment_indices=[], clock=clock,
                        random_bytes=_nonce)
    assert signed.request.hex() == "0a20" + CHUNK.hex() + REQUEST_TAIL
    assert signed.signature.hex() == (
        "9cb99565c1926a6bd6eb012567a982b9ecf2090c665da58dfad5fb78fd16821e"
        "83cb291670371921b32411d4074d470bdd1c627438e515537eea0e3efefe7d0e")
    assert hashlib.sha256(signed.delegation).hexdigest() == (
        "30fb1d9bd609e3d8bd89b0147cb6d2fb49c78533abf9d579413b0371f555937a")


def test_delete_request_and_signature_bytes() -> None:
    signed = sign_delete(OWNER, chunk_ids=[CHUNK, bytes(32)], target_peer_id="peer-b",
                         clock=ManualClock(1_800_000_000_000), random_bytes=_nonce)
    assert signed.request.hex() == \
        "0a20" + CHUNK.hex() + "0a20" + bytes(32).hex() + REQUEST_TAIL
    assert signed.signature.hex() == (
        "664c290c03601ba72699a75fb0fece9809e02b4ac2e8a15e6603ed34bacb02b8"
        "46c61a28426963ec01993e38403b279c21bb2daa21ae223e8df1ce628c89bd0d")


def test_signed_document_signature_bytes() -> None:
    """The docs/metadata.md example (its signing bytes are pinned in
    tests/adversarial/test_signed_doc_format.py), down to the signature value."""
    doc = {"type": "tomb", "version": 2, "note": "caf\u00e9", "pending": {"b": [], "a": [1, 2]}}
    signed = sign_document("tomb:x", doc, IdentityKey.from_seed(bytes(32)))
    assert signed["signature"]["value"] == (
        "3ee6781fa42d55518de11884102c7624b90a5f04d30dd735cb654f4f9d97e2fc"
        "1c267ac5ecb8b5fa41affb1887b954825288cae5bf7826ca097b3a2d49079c01")
