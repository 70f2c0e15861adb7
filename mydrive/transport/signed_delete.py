"""Owner-signed delete requests: the byte format, signing, and the receiving peer's checks.

What is signed: b"mydrive-delete-v1" || serialized DeleteRequest (proto/mydrive.proto): the
chunk ids, the target peer, a timestamp and a 16-byte nonce. The receiving peer verifies the
signature with the owner key recorded next to each chunk it holds, then checks the target
peer, the freshness window and that the nonce was never seen (docs/deletion.md). The context
string differs from fetches', so a signed fetch can never be replayed as a delete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from mydrive.crypto.primitives import IdentityKey, verify_signature
from mydrive.errors import BadRequest, PermissionDenied
from mydrive.formats.digest import DIGEST_BYTES
from mydrive.runtime.clock import Clock
from mydrive.transport.signed_fetch import NONCE_BYTES, ReplayGuard
from mydrive.transport.wire import mydrive_pb2 as pb

SIGNING_CONTEXT = b"mydrive-delete-v1"
MAX_DELETE_CHUNK_IDS = 1024
MAX_REQUEST_BYTES = 64 * 1024


@dataclass(frozen=True)
class SignedDelete:
    request: bytes
    signature: bytes


@dataclass(frozen=True)
class DeleteRequest:
    chunk_ids: tuple[bytes, ...]
    target_peer_id: str
    timestamp_ms: int
    nonce: bytes


@dataclass(frozen=True)
class DeleteOutcome:
    """What a peer answered: chunks it removed and chunks it did not hold."""

    removed: tuple[bytes, ...]
    absent: tuple[bytes, ...]


def sign_delete(identity: IdentityKey, *, chunk_ids: Sequence[bytes], target_peer_id: str,
                clock: Clock,
                random_bytes: Callable[[int], bytes] = os.urandom) -> SignedDelete:
    assert 1 <= len(chunk_ids) <= MAX_DELETE_CHUNK_IDS, "callers batch chunk ids"
    msg = pb.DeleteRequest(chunk_ids=list(chunk_ids), target_peer_id=target_peer_id,
                           timestamp_ms=clock.now_ms(), nonce=random_bytes(NONCE_BYTES))
    request = msg.SerializeToString(deterministic=True)
    return SignedDelete(request=request, signature=identity.sign(SIGNING_CONTEXT + request))


def parse_delete(signed: SignedDelete) -> DeleteRequest:
    """Decode and bound-check without trusting anything yet (``authorize`` checks the rest)."""
    if len(signed.request) > MAX_REQUEST_BYTES:
        raise BadRequest("delete request too large")
    try:
        msg = pb.DeleteRequest.FromString(signed.request)
    except DecodeError as exc:
        raise BadRequest("malformed delete request") from exc
    if len(msg.nonce) != NONCE_BYTES:
        raise BadRequest(f"delete nonce must be {NONCE_BYTES} bytes")
    if not 1 <= len(msg.chunk_ids) <= MAX_DELETE_CHUNK_IDS:
        raise BadRequest(f"a delete names 1..{MAX_DELETE_CHUNK_IDS} chunk ids, "
                         f"got {len(msg.chunk_ids)}")
    chunk_ids = tuple(bytes(c) for c in msg.chunk_ids)
    if any(len(c) != DIGEST_BYTES for c in chunk_ids):
        raise BadRequest(f"chunk ids are {DIGEST_BYTES} bytes")
    return DeleteRequest(chunk_ids=tuple(dict.fromkeys(chunk_ids)),
                         target_peer_id=msg.target_peer_id, timestamp_ms=msg.timestamp_ms,
                         nonce=bytes(msg.nonce))


def check_target_and_time(request: DeleteRequest, *, my_peer_id: str, clock: Clock,
                          window_ms: int) -> None:
    """The checks that need no key: aimed at this peer, inside the freshness window."""
    if request.target_peer_id != my_peer_id:
        raise PermissionDenied("delete request was signed for another peer")
    if abs(clock.now_ms() - request.timestamp_ms) > window_ms:
        raise PermissionDenied("stale delete request (outside the freshness window)")


def authorize(signed: SignedDelete, request: DeleteRequest, *,
              owner_public_keys: set[bytes], my_peer_id: str, clock: Clock,
              replay_guard: ReplayGuard) -> None:
    """Raise PermissionDenied unless the owner of every held chunk signed this, for us, now.

    ``owner_public_keys`` are the owner keys recorded with the named chunks this peer holds;
    one signature can verify under at most one of them, so chunks of two owners in one
    request are refused as a whole.
    """
    check_target_and_time(request, my_peer_id=my_peer_id, clock=clock,
                          window_ms=replay_guard.window_ms)
    message = SIGNING_CONTEXT + signed.request
    for key in sorted(owner_public_keys):
        if not verify_signature(key, message, signed.signature):
            raise PermissionDenied("delete not signed by the owner of every named chunk")
    try:
        replay_guard.check_and_remember(request.nonce, request.timestamp_ms, clock.now_ms())
    except PermissionDenied:
        raise PermissionDenied("replayed delete request (nonce already used)") from None
