"""Attacks on fetch delegations: each is refused by the serving peer before a byte leaves.

A delegation lets the owner's own peer fetch a job's chunks without the owner's identity key
(docs/delegation.md). Here a stolen, widened, expired, forged or replayed one is presented to
real ChunkServers of an in-memory network, and the honest use is shown to work.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mydrive.crypto.keys import unwrap_file_key
from mydrive.crypto.primitives import IdentityKey
from mydrive.engine.download import download_file
from mydrive.errors import PermissionDenied
from mydrive.formats.delegation import Delegation
from mydrive.formats.filerecord import FileRecord
from mydrive.transport.signed_fetch import (
    SIGNING_CONTEXT,
    DelegateSigner,
    SignedFetch,
    sign_delegation,
    sign_fetch,
)
from mydrive.transport.wire import mydrive_pb2 as pb
from tests.clientnet import client_net
from tests.strategies import random_file

DELEGATE = IdentityKey.from_seed(b"delegate-key-of-the-owners-peer!")
THIEF = IdentityKey.from_seed(b"a-dishonest-peer-s-own-key-32by!")
LIFETIME_MS = 600_000


@pytest.fixture
def world(tmp_path: Path):
    net = client_net(tmp_path / "net")
    c = net.client()
    c.create_user("alice", "alice passphrase")
    c.create_user("bob", "bob passphrase")
    a, b = c.login("alice", "alice passphrase"), c.login("bob", "bob passphrase")
    src = random_file(tmp_path / "secret.bin", 120_000)
    rec = c.put(a, src, "/secret.bin")
    other = c.put(a, random_file(tmp_path / "other.bin", 50_000), "/other.bin")
    yield net, c, a, b, rec, other, src
    c.close()


def _delegation(keys, records: list[FileRecord], clock, *, peer_id: str = "own-peer",
                delegate: IdentityKey = DELEGATE):
    chunk_ids = tuple(sorted({ch.chunk_id for r in records for ch in r.chunks}))
    now = clock.now_ms()
    return sign_delegation(keys.identity, Delegation(
        owner_public_key=keys.identity.public_bytes(),
        delegate_public_key=delegate.public_bytes(), delegate_peer_id=peer_id,
        chunk_ids=chunk_ids, issued_ms=now, not_after_ms=now + LIFETIME_MS))


def _raw_fetch(key: IdentityKey, delegation: bytes, chunk_id: bytes, peer: str,
               clock) -> SignedFetch:
    """A fetch signed by ``key`` carrying ``delegation`` whatever it covers (no local check)."""
    request = pb.FetchRequest(chunk_id=chunk_id, target_peer_id=peer,
                              timestamp_ms=clock.now_ms(),
                              nonce=os.urandom(16)).SerializeToString(deterministic=True)
    return SignedFetch(request=request, signature=key.sign(SIGNING_CONTEXT + request),
                       delegation=delegation)


def _fetch(net, c, peer_id: str, signed: SignedFetch) -> list:
    addr = {p.peer_id: p.address for p in c.known_peers()}[peer_id]
    return list(net.transport.fetch(addr, signed))


def _served(net) -> float:
    return sum(p.metrics.value("sender_segments_served_total")
               for p in net.transport.peers.values())


def test_delegation_lets_delegate_download_without_identity_key(world, tmp_path: Path) -> None:
    """With the file key and a delegation only, the delegate fetches the file bit-identical."""
    net, c, a, b, rec, other, src = world
    signer = DelegateSigner(DELEGATE, [_delegation(a, [rec], net.clock)])
    peers = {p.peer_id: p.address for p in c.known_peers()}
    out = tmp_path / "out.bin"
    download_file(rec, out, keys=None, file_key=unwrap_file_key(a, rec.file_id,
                                                                rec.wrapped_file_key),
                  signer=signer, peers=peers, settings=c.settings, transport=net.transport,
                  clock=net.clock)
    assert out.read_bytes() == src.read_bytes()


def test_delegation_for_other_chunks_is_refused(world) -> None:
    """A delegation for /other.bin's chunks can't fetch a chunk of /secret.bin."""
    net, c, a, b, rec, other, src = world
    delegation = _delegation(a, [other], net.clock).encode()
    chunk = rec.chunks[0]
    with pytest.raises(PermissionDenied, match="does not cover this chunk"):
        _fetch(net, c, chunk.replicas[0],
               _raw_fetch(DELEGATE, delegation, chunk.chunk_id, chunk.replicas[0], net.clock))
    signer = DelegateSigner(DELEGATE, [_delegation(a, [other], net.clock)])
    with pytest.raises(PermissionDenied, match="no delegation covers"):
        sign_fetch(signer, chunk_id=chunk.chunk_id, target_peer_id=chunk.replicas[0],
                   segment_indices=[], clock=net.clock)
    assert _served(net) == 0


def test_delegation_after_expiry_is_refused(world) -> None:
    """A delegation presented after its not_after_ms is refused, however fresh the request."""
    net, c, a, b, rec, other, src = world
    signer = DelegateSigner(DELEGATE, [_delegation(a, [rec], net.clock)])
    chunk = rec.chunks[0]
    net.clock.advance_ms(LIFETIME_MS)
    signed = sign_fetch(signer, chunk_id=chunk.chunk_id, target_peer_id=chunk.replicas[0],
                        segment_indices=[], clock=net.clock)
    with pytest.raises(PermissionDenied, match="expired"):
        _fetch(net, c, chunk.replicas[0], signed)
    assert _served(net) == 0


def test_delegation_presented_by_another_peer_is_refused(world) -> None:
    """A peer that captured a delegation and signs with its own key is refused."""
    net, c, a, b, rec, other, src = world
    delegation = _delegation(a, [rec], net.clock).encode()
    chunk = rec.chunks[0]
    with pytest.raises(PermissionDenied, match="not signed by the delegate"):
        _fetch(net, c, chunk.replicas[0],
               _raw_fetch(THIEF, delegation, chunk.chunk_id, chunk.replicas[0], net.clock))
    assert _served(net) == 0


def test_delegation_signed_by_another_user_is_refused(world) -> None:
    """Bob delegating Alice's chunks to a peer is refused: the chunk's owner did not sign."""
    net, c, a, b, rec, other, src = world
    bobs = sign_delegation(b.identity, Delegation(
        owner_public_key=b.identity.public_bytes(), delegate_public_key=THIEF.public_bytes(),
        delegate_peer_id="thief", chunk_ids=tuple(sorted(ch.chunk_id for ch in rec.chunks)),
        issued_ms=net.clock.now_ms(), not_after_ms=net.clock.now_ms() + LIFETIME_MS))
    chunk = rec.chunks[0]
    with pytest.raises(PermissionDenied, match="not signed by the chunk's owner"):
        _fetch(net, c, chunk.replicas[0],
               _raw_fetch(THIEF, bobs.encode(), chunk.chunk_id, chunk.replicas[0], net.clock))
    assert _served(net) == 0


def test_delegated_fetch_replayed_is_refused(world) -> None:
    """The same delegated fetch sent twice: served once, refused the second time."""
    net, c, a, b, rec, other, src = world
    signer = DelegateSigner(DELEGATE, [_delegation(a, [rec], net.clock)])
    chunk = rec.chunks[0]
    signed = sign_fetch(signer, chunk_id=chunk.chunk_id, target_peer_id=chunk.replicas[0],
                        segment_indices=[], clock=net.clock)
    assert _fetch(net, c, chunk.replicas[0], signed)
    with pytest.raises(PermissionDenied, match="replayed"):
        _fetch(net, c, chunk.replicas[0], signed)


def test_delegated_fetch_for_another_peer_is_refused(world) -> None:
    """A delegated fetch signed for replica X and sent to replica Y is refused by Y."""
    net, c, a, b, rec, other, src = world
    signer = DelegateSigner(DELEGATE, [_delegation(a, [rec], net.clock)])
    chunk = rec.chunks[0]
    x, y = chunk.replicas[0], chunk.replicas[1]
    signed = sign_fetch(signer, chunk_id=chunk.chunk_id, target_peer_id=x,
                        segment_indices=[], clock=net.clock)
    with pytest.raises(PermissionDenied, match="another peer"):
        _fetch(net, c, y, signed)


def test_delegation_issued_in_the_future_is_refused(world) -> None:
    """A delegation dated an hour ahead (to outlive its lifetime limit) is refused."""
    net, c, a, b, rec, other, src = world
    now = net.clock.now_ms()
    ahead = sign_delegation(a.identity, Delegation(
        owner_public_key=a.identity.public_bytes(), delegate_public_key=DELEGATE.public_bytes(),
        delegate_peer_id="own-peer", chunk_ids=tuple(sorted(ch.chunk_id for ch in rec.chunks)),
        issued_ms=now + 3_600_000, not_after_ms=now + 7_200_000))
    chunk = rec.chunks[0]
    signed = sign_fetch(DelegateSigner(DELEGATE, [ahead]), chunk_id=chunk.chunk_id,
                        target_peer_id=chunk.replicas[0], segment_indices=[], clock=net.clock)
    with pytest.raises(PermissionDenied, match="issued in the future"):
        _fetch(net, c, chunk.replicas[0], signed)
    assert _served(net) == 0


def test_delegation_tampered_scope_is_refused(world) -> None:
    """Adding a chunk id to a signed delegation's body breaks the owner's signature."""
    net, c, a, b, rec, other, src = world
    signed = _delegation(a, [other], net.clock)
    body = Delegation.decode(signed.body)
    widened = Delegation(owner_public_key=body.owner_public_key,
                         delegate_public_key=body.delegate_public_key,
                         delegate_peer_id=body.delegate_peer_id,
                         chunk_ids=tuple(sorted({*body.chunk_ids, rec.chunks[0].chunk_id})),
                         issued_ms=body.issued_ms, not_after_ms=body.not_after_ms)
    forged = widened.encode() + signed.signature
    chunk = rec.chunks[0]
    with pytest.raises(PermissionDenied, match="not signed by the chunk's owner"):
        _fetch(net, c, chunk.replicas[0],
               _raw_fetch(DELEGATE, forged, chunk.chunk_id, chunk.replicas[0], net.clock))
    assert _served(net) == 0


# ---- the serving peer's cache of verified delegations (VerifiedDelegations) --------------

def _holding_both(c, mine: FileRecord, theirs: FileRecord):
    """A replica holding a chunk of each file, and those two chunks."""
    for ours in mine.chunks:
        for other in theirs.chunks:
            common = set(ours.replicas) & set(other.replicas)
            if common:
                return sorted(common)[0], ours, other
    raise AssertionError("no peer holds a chunk of both files")


def test_cached_delegation_is_verified_once_and_still_checked_every_call(world, monkeypatch):
    """The second fetch with the same delegation skips its signature check, not the rest:
    scope, delegate signature and expiry are still refused."""
    import mydrive.transport.signed_fetch as signed_fetch

    net, c, a, b, rec, other, src = world
    verified: list[bytes] = []
    real = signed_fetch.verify_delegation
    monkeypatch.setattr(signed_fetch, "verify_delegation",
                        lambda d, k: verified.append(d.body) or real(d, k))
    delegation = _delegation(a, [rec], net.clock)
    signer = DelegateSigner(DELEGATE, [delegation])
    chunk = rec.chunks[0]
    peer = chunk.replicas[0]
    for _ in range(2):
        assert _fetch(net, c, peer, sign_fetch(signer, chunk_id=chunk.chunk_id,
                                               target_peer_id=peer, segment_indices=[],
                                               clock=net.clock))
    assert len(verified) == 1
    outside = next(ch for ch in other.chunks if peer in ch.replicas) \
        if any(peer in ch.replicas for ch in other.chunks) else None
    if outside is not None:
        with pytest.raises(PermissionDenied, match="does not cover this chunk"):
            _fetch(net, c, peer, _raw_fetch(DELEGATE, delegation.encode(), outside.chunk_id,
                                            peer, net.clock))
    with pytest.raises(PermissionDenied, match="not signed by the delegate"):
        _fetch(net, c, peer, _raw_fetch(THIEF, delegation.encode(), chunk.chunk_id, peer,
                                        net.clock))
    net.clock.advance_ms(LIFETIME_MS)
    with pytest.raises(PermissionDenied, match="expired"):
        _fetch(net, c, peer, sign_fetch(signer, chunk_id=chunk.chunk_id, target_peer_id=peer,
                                        segment_indices=[], clock=net.clock))
    assert len(verified) == 1


def test_cached_delegation_does_not_pass_for_another_owners_chunk(world, tmp_path: Path):
    """Alice's delegation, verified and cached by a replica, attached to a fetch of Bob's
    chunk on that replica: refused as not signed by that chunk's owner."""
    net, c, a, b, rec, other, src = world
    bobs = c.put(b, random_file(tmp_path / "bob.bin", 120_000), "/bob.bin")
    peer, alices_chunk, bobs_chunk = _holding_both(c, rec, bobs)
    delegation = _delegation(a, [rec, bobs], net.clock)  # names Bob's chunk too
    assert _fetch(net, c, peer, _raw_fetch(DELEGATE, delegation.encode(),
                                           alices_chunk.chunk_id, peer, net.clock))
    with pytest.raises(PermissionDenied, match="not signed by the chunk's owner"):
        _fetch(net, c, peer, _raw_fetch(DELEGATE, delegation.encode(), bobs_chunk.chunk_id,
                                        peer, net.clock))
