"""The signed request envelope that fetches and deletes share, and the serving peer's
key-free checks on it (docs/protocol.md).

An envelope is ``request`` (a protobuf message serialized deterministically, carrying a
target peer id, a timestamp and a 16-byte nonce) and ``signature``, Ed25519 over
``context || request``. Each request kind has its own context string, so one kind can never
be replayed as another. The serving peer bounds and decodes the request, checks the target
and the freshness window, verifies the signature, and only then remembers the nonce: a
request nobody verified can't take room in the replay guard or push a real nonce out.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable
from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from mydrive.crypto.primitives import verify_signature
from mydrive.errors import BadRequest, PeerUnavailable, PermissionDenied

NONCE_BYTES = 16
FRESHNESS_WINDOW_MS = 120_000
MAX_REQUEST_BYTES = 64 * 1024
# ~150 bytes each: ~40 MB at most. 2,000 verified requests/s for 120 s, far more than a
# peer's bandwidth serves at one chunk (up to 4 MiB) a request.
MAX_REMEMBERED_NONCES = 250_000

M = TypeVar("M", bound=Message)


def seal(sign: Callable[[bytes], bytes], context: bytes, msg: Message) -> tuple[bytes, bytes]:
    """(request, signature): ``msg`` serialized deterministically, signed after ``context``."""
    request = msg.SerializeToString(deterministic=True)
    return request, sign(context + request)


def signed_by(public_key: bytes, context: bytes, request: bytes, signature: bytes) -> bool:
    return verify_signature(public_key, context + request, signature)


def open_request(kind: str, request: bytes, message_type: type[M]) -> M:
    """Bound and decode ``request`` without trusting it; its nonce must be 16 bytes."""
    if len(request) > MAX_REQUEST_BYTES:
        raise BadRequest(f"{kind} request too large")
    try:
        msg = message_type.FromString(request)
    except DecodeError as exc:
        raise BadRequest(f"malformed {kind} request") from exc
    if len(getattr(msg, "nonce")) != NONCE_BYTES:  # noqa: B009 (every kind has a nonce)
        raise BadRequest(f"{kind} nonce must be {NONCE_BYTES} bytes")
    return msg


def check_target_and_time(kind: str, *, target_peer_id: str, timestamp_ms: int,
                          my_peer_id: str, now_ms: int, window_ms: int) -> None:
    """The checks that need no key: aimed at this peer, inside the freshness window."""
    if target_peer_id != my_peer_id:
        raise PermissionDenied(f"{kind} request was signed for another peer")
    if abs(now_ms - timestamp_ms) > window_ms:
        raise PermissionDenied(f"stale {kind} request (outside the freshness window)")


class ReplayGuard:
    """The nonces of verified requests, each kept until its request turns stale.

    A request passes the freshness check until ``timestamp + window``; its nonce is kept
    exactly that long, so memory is bounded by the verified requests of one window. Call
    ``remember`` only after the signature verified. When ``max_entries`` unexpired nonces are
    held the guard refuses new requests (PeerUnavailable: try again or elsewhere) rather
    than forget one that could still be replayed.
    """

    def __init__(self, *, window_ms: int = FRESHNESS_WINDOW_MS,
                 max_entries: int = MAX_REMEMBERED_NONCES) -> None:
        self.window_ms = window_ms
        self.max_entries = max_entries
        self._expiry: dict[bytes, int] = {}
        self._by_expiry: list[tuple[int, bytes]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._expiry)

    def refuse_seen(self, kind: str, nonce: bytes, now_ms: int) -> None:
        """PermissionDenied if ``nonce`` is remembered; remembers nothing."""
        with self._lock:
            self._expire(now_ms)
            if nonce in self._expiry:
                raise PermissionDenied(f"replayed {kind} request (nonce already used)")

    def remember(self, kind: str, nonce: bytes, timestamp_ms: int, now_ms: int) -> None:
        """Remember a verified request's nonce; PermissionDenied if it was seen before."""
        with self._lock:
            self._expire(now_ms)
            if nonce in self._expiry:
                raise PermissionDenied(f"replayed {kind} request (nonce already used)")
            if len(self._expiry) >= self.max_entries:
                raise PeerUnavailable(f"too many {kind} requests in the freshness window; "
                                      f"try again shortly")
            expiry = timestamp_ms + self.window_ms
            self._expiry[nonce] = expiry
            heapq.heappush(self._by_expiry, (expiry, nonce))

    def _expire(self, now_ms: int) -> None:
        while self._by_expiry and self._by_expiry[0][0] < now_ms:
            _, nonce = heapq.heappop(self._by_expiry)
            del self._expiry[nonce]
