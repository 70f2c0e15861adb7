"""Owner-signed delete requests: the byte format, signing, and the receiving peer's checks.

What is signed: b"mydrive-delete-v1" || serialized DeleteRequest (proto/mydrive.proto): the
chunk ids, the target peer, a timestamp and a 16-byte nonce, in the envelope shared with
fetches (mydrive.transport.envelope). The receiving peer checks the target peer and the
freshness window, verifies the signature with the owner key recorded next to each chunk it
holds, and only then remembers the nonce (docs/deletion.md). The context string differs
from fetches', so a signed fetch can never be replayed as a delete.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mydrive.crypto.primitives import IdentityKey
from mydrive.errors import BadRequest, PermissionDenied
from mydrive.formats.digest import DIGEST_BYTES
from mydrive.runtime.clock import Clock
from mydrive.transport import envelope
from mydrive.transport.envelope import NONCE_BYTES, ReplayGuard, open_request, seal, signed_by
from mydrive.transport.wire import mydrive_pb2 as pb

KIND = "delete"
SIGNING_CONTEXT = b"mydrive-delete-v1"
MAX_DELETE_CHUNK_IDS = 1024


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
    request, signature = seal(identity.sign, SIGNING_CONTEXT, msg)
    return SignedDelete(request=request, signature=signature)


def parse_delete(signed: SignedDelete) -> DeleteRequest:
    """Decode and bound-check without trusting anything yet (``authorize`` checks the rest)."""
    msg = open_request(KIND, signed.request, pb.DeleteRequest)
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
                          replay_guard: ReplayGuard) -> None:
    """The checks that need no key: aimed at this peer, inside the freshness window, and not
    a nonce already used. Nothing is remembered."""
    now = clock.now_ms()
    envelope.check_target_and_time(KIND, target_peer_id=request.target_peer_id,
                                   timestamp_ms=request.timestamp_ms, my_peer_id=my_peer_id,
                                   now_ms=now, window_ms=replay_guard.window_ms)
    replay_guard.refuse_seen(KIND, request.nonce, now)


def authorize(signed: SignedDelete, request: DeleteRequest, *,
              owner_public_keys: set[bytes], my_peer_id: str, clock: Clock,
              replay_guard: ReplayGuard) -> None:
    """Raise PermissionDenied unless the owner of every held chunk signed this, for us, now;
    then remember the nonce.

    ``owner_public_keys`` are the owner keys recorded with the named chunks this peer holds;
    one signature can verify under at most one of them, so chunks of two owners in one
    request are refused as a whole.
    """
    assert owner_public_keys, "with no key to verify under, nothing may be remembered"
    check_target_and_time(request, my_peer_id=my_peer_id, clock=clock,
                          replay_guard=replay_guard)
    for key in sorted(owner_public_keys):
        if not signed_by(key, SIGNING_CONTEXT, signed.request, signed.signature):
            raise PermissionDenied("delete not signed by the owner of every named chunk")
    replay_guard.remember(KIND, request.nonce, request.timestamp_ms, clock.now_ms())
