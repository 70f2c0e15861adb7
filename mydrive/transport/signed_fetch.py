"""Owner-signed fetch requests: the byte format, signing, and the serving peer's checks.

What is signed: b"mydrive-fetch-v1" || serialized FetchRequest (proto/mydrive.proto). The
serving peer verifies with the owner key recorded when the chunk was stored, then checks
the target peer, the freshness window and that the nonce was never seen (docs/protocol.md).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError

from mydrive.crypto.primitives import IdentityKey, verify_signature
from mydrive.errors import BadRequest, PermissionDenied
from mydrive.runtime.clock import Clock
from mydrive.transport.wire import mydrive_pb2 as pb

SIGNING_CONTEXT = b"mydrive-fetch-v1"
NONCE_BYTES = 16
FRESHNESS_WINDOW_MS = 120_000
MAX_REQUEST_BYTES = 64 * 1024


@dataclass(frozen=True)
class SignedFetch:
    request: bytes
    signature: bytes


@dataclass(frozen=True)
class FetchRequest:
    chunk_id: bytes
    target_peer_id: str
    timestamp_ms: int
    nonce: bytes
    segment_indices: tuple[int, ...]  # empty = all


def sign_fetch(identity: IdentityKey, *, chunk_id: bytes, target_peer_id: str,
               segment_indices: Sequence[int], clock: Clock,
               random_bytes: Callable[[int], bytes] = os.urandom) -> SignedFetch:
    msg = pb.FetchRequest(chunk_id=chunk_id, target_peer_id=target_peer_id,
                          timestamp_ms=clock.now_ms(), nonce=random_bytes(NONCE_BYTES),
                          segment_indices=list(segment_indices))
    request = msg.SerializeToString(deterministic=True)
    return SignedFetch(request=request, signature=identity.sign(SIGNING_CONTEXT + request))


def parse_fetch(signed: SignedFetch) -> FetchRequest:
    """Decode without trusting anything yet (the signature is checked by ``authorize``)."""
    if len(signed.request) > MAX_REQUEST_BYTES:
        raise BadRequest("fetch request too large")
    try:
        msg = pb.FetchRequest.FromString(signed.request)
    except DecodeError as exc:
        raise BadRequest("malformed fetch request") from exc
    if len(msg.nonce) != NONCE_BYTES:
        raise BadRequest(f"fetch nonce must be {NONCE_BYTES} bytes")
    return FetchRequest(chunk_id=bytes(msg.chunk_id), target_peer_id=msg.target_peer_id,
                        timestamp_ms=msg.timestamp_ms, nonce=bytes(msg.nonce),
                        segment_indices=tuple(msg.segment_indices))


class ReplayGuard:
    """Remembers nonces for the freshness window so a captured request can't be replayed."""

    def __init__(self, *, window_ms: int = FRESHNESS_WINDOW_MS, max_entries: int = 1_000_000):
        self.window_ms = window_ms
        self.max_entries = max_entries
        self._seen: OrderedDict[bytes, int] = OrderedDict()
        self._lock = threading.Lock()

    def check_and_remember(self, nonce: bytes, timestamp_ms: int, now_ms: int) -> None:
        with self._lock:
            while self._seen:
                oldest_nonce, oldest_ts = next(iter(self._seen.items()))
                if oldest_ts >= now_ms - self.window_ms and len(self._seen) < self.max_entries:
                    break
                del self._seen[oldest_nonce]
            if nonce in self._seen:
                raise PermissionDenied("replayed fetch request (nonce already used)")
            self._seen[nonce] = timestamp_ms


def authorize(signed: SignedFetch, request: FetchRequest, *, owner_public_key: bytes,
              my_peer_id: str, clock: Clock, replay_guard: ReplayGuard) -> None:
    """Raise PermissionDenied unless the chunk's owner signed this request for this peer now."""
    if not verify_signature(owner_public_key, SIGNING_CONTEXT + signed.request, signed.signature):
        raise PermissionDenied("fetch not signed by the chunk's owner")
    if request.target_peer_id != my_peer_id:
        raise PermissionDenied("fetch request was signed for another peer")
    now = clock.now_ms()
    if abs(now - request.timestamp_ms) > replay_guard.window_ms:
        raise PermissionDenied("stale fetch request (outside the freshness window)")
    replay_guard.check_and_remember(request.nonce, request.timestamp_ms, now)
