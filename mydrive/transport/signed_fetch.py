"""Owner-signed fetch requests: the byte format, signing, and the serving peer's checks.

What is signed: b"mydrive-fetch-v1" || serialized FetchRequest (proto/mydrive.proto), in the
envelope shared with deletes (mydrive.transport.envelope). The serving peer checks the target
peer and the freshness window, verifies with the owner key recorded when the chunk was
stored, and only then remembers the nonce, refusing one seen before (docs/protocol.md).

A fetch may instead be signed by a delegate: the owner's own peer running a download job
(docs/jobs.md). It then carries the owner's signed delegation (mydrive.formats.delegation,
signed over b"mydrive-delegation-v1" || body), and the serving peer also checks that the
owner signed it, that it names this chunk, that it has not expired, and that the request is
signed by the delegate key it names (docs/delegation.md). Nothing is stored: a crash leaves
only the in-memory nonce window, which a restart empties (stale requests still fail the
freshness check).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mydrive.crypto.primitives import IdentityKey
from mydrive.errors import PermissionDenied
from mydrive.formats.delegation import Delegation, SignedDelegation
from mydrive.formats.digest import digest
from mydrive.runtime.clock import Clock
from mydrive.transport.envelope import FRESHNESS_WINDOW_MS as FRESHNESS_WINDOW_MS
from mydrive.transport.envelope import (
    NONCE_BYTES,
    check_target_and_time,
    open_request,
    seal,
    signed_by,
)
from mydrive.transport.envelope import ReplayGuard as ReplayGuard
from mydrive.transport.wire import mydrive_pb2 as pb

KIND = "fetch"
SIGNING_CONTEXT = b"mydrive-fetch-v1"
DELEGATION_CONTEXT = b"mydrive-delegation-v1"


@dataclass(frozen=True)
class SignedFetch:
    request: bytes
    signature: bytes
    delegation: bytes = b""  # an encoded SignedDelegation when a delegate signed the request


@dataclass(frozen=True)
class FetchRequest:
    chunk_id: bytes
    target_peer_id: str
    timestamp_ms: int
    nonce: bytes
    segment_indices: tuple[int, ...]  # empty = all


def sign_delegation(identity: IdentityKey, delegation: Delegation) -> SignedDelegation:
    """The owner's signature over ``delegation`` (which must name the owner's own key)."""
    assert delegation.owner_public_key == identity.public_bytes()
    body = delegation.encode()
    return SignedDelegation(body=body, signature=identity.sign(DELEGATION_CONTEXT + body))


def verify_delegation(signed: SignedDelegation, owner_public_key: bytes) -> Delegation:
    """The delegation, if ``owner_public_key`` signed it; PermissionDenied otherwise."""
    delegation = Delegation.decode(signed.body)
    if delegation.owner_public_key != owner_public_key or not signed_by(
            owner_public_key, DELEGATION_CONTEXT, signed.body, signed.signature):
        raise PermissionDenied("delegation not signed by the chunk's owner")
    return delegation


class VerifiedDelegations:
    """The delegations a serving peer has verified, by the digest of their signed bytes and
    the owner key they were verified under; the ``capacity`` most recently used are kept.

    A download job sends the same delegation with every fetch: up to 4096 chunk ids
    (128 KiB), which cost 2.4 ms to decode and verify each time, more than the rest of the
    call. Only a delegation that verified is kept, so a hit is exactly what verifying again
    would give; expiry and scope are still checked on every call (``authorize``)."""

    def __init__(self, capacity: int = 64) -> None:
        self.capacity = capacity
        self._verified: OrderedDict[bytes, Delegation] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, blob: bytes, owner_public_key: bytes) -> Delegation:
        key = digest(blob) + owner_public_key
        with self._lock:
            known = self._verified.get(key)
            if known is not None:
                self._verified.move_to_end(key)
                return known
        delegation = verify_delegation(SignedDelegation.decode(blob), owner_public_key)
        with self._lock:
            self._verified[key] = delegation
            while len(self._verified) > self.capacity:
                self._verified.popitem(last=False)
        return delegation


class DelegateSigner:
    """Signs fetches as a delegate: with this peer's delegate key, attaching the owner's
    delegation that covers the chunk. Chunks no delegation covers can't be signed for."""

    def __init__(self, key: IdentityKey, delegations: Sequence[SignedDelegation]) -> None:
        self.key = key
        self._by_chunk: dict[bytes, bytes] = {}
        for signed in delegations:
            encoded = signed.encode()
            for chunk_id in Delegation.decode(signed.body).chunk_ids:
                self._by_chunk[chunk_id] = encoded

    def delegation_for(self, chunk_id: bytes) -> bytes:
        found = self._by_chunk.get(chunk_id)
        if found is None:
            raise PermissionDenied(f"no delegation covers chunk {chunk_id.hex()[:16]}")
        return found


FetchSigner = IdentityKey | DelegateSigner


def sign_fetch(signer: FetchSigner, *, chunk_id: bytes, target_peer_id: str,
               segment_indices: Sequence[int], clock: Clock,
               random_bytes: Callable[[int], bytes] = os.urandom) -> SignedFetch:
    """A fetch signed by the owner's identity key, or by a delegate with its delegation."""
    msg = pb.FetchRequest(chunk_id=chunk_id, target_peer_id=target_peer_id,
                          timestamp_ms=clock.now_ms(), nonce=random_bytes(NONCE_BYTES),
                          segment_indices=list(segment_indices))
    if isinstance(signer, DelegateSigner):
        request, signature = seal(signer.key.sign, SIGNING_CONTEXT, msg)
        return SignedFetch(request=request, signature=signature,
                           delegation=signer.delegation_for(chunk_id))
    request, signature = seal(signer.sign, SIGNING_CONTEXT, msg)
    return SignedFetch(request=request, signature=signature)


def parse_fetch(signed: SignedFetch) -> FetchRequest:
    """Decode without trusting anything yet (the signature is checked by ``authorize``)."""
    msg = open_request(KIND, signed.request, pb.FetchRequest)
    return FetchRequest(chunk_id=bytes(msg.chunk_id), target_peer_id=msg.target_peer_id,
                        timestamp_ms=msg.timestamp_ms, nonce=bytes(msg.nonce),
                        segment_indices=tuple(msg.segment_indices))


def authorize(signed: SignedFetch, request: FetchRequest, *, owner_public_key: bytes,
              my_peer_id: str, clock: Clock, replay_guard: ReplayGuard,
              delegations: VerifiedDelegations | None = None) -> None:
    """Raise PermissionDenied unless the chunk's owner, or a delegate holding the owner's
    valid delegation for this chunk, signed this request for this peer now. The nonce is
    remembered only once all of that holds. ``delegations``: the serving peer's cache of
    delegations already verified (none: verify every time)."""
    now = clock.now_ms()
    check_target_and_time(KIND, target_peer_id=request.target_peer_id,
                          timestamp_ms=request.timestamp_ms, my_peer_id=my_peer_id,
                          now_ms=now, window_ms=replay_guard.window_ms)
    if signed.delegation:
        delegation = (delegations.verify(signed.delegation, owner_public_key)
                      if delegations is not None else
                      verify_delegation(SignedDelegation.decode(signed.delegation),
                                        owner_public_key))
        if not delegation.covers(request.chunk_id):
            raise PermissionDenied("the delegation does not cover this chunk")
        if now >= delegation.not_after_ms:
            raise PermissionDenied("the delegation has expired")
        if delegation.issued_ms > now + replay_guard.window_ms:
            raise PermissionDenied("the delegation is issued in the future")
        if not signed_by(delegation.delegate_public_key, SIGNING_CONTEXT, signed.request,
                         signed.signature):
            raise PermissionDenied("fetch not signed by the delegate the delegation names")
    elif not signed_by(owner_public_key, SIGNING_CONTEXT, signed.request, signed.signature):
        raise PermissionDenied("fetch not signed by the chunk's owner")
    replay_guard.remember(KIND, request.nonce, request.timestamp_ms, now)
