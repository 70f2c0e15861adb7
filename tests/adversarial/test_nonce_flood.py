"""Floods at the replay guard: no nonce is remembered before its signature verifies.

A serving peer remembers each fetch's and delete's nonce for the freshness window so a
captured request can't be served twice. Here a dishonest member sends floods at real
ChunkServers and ChunkDeleters of an in-memory network: requests with junk signatures,
signed with its own key for someone else's chunk, with forged delegations, deletes of chunks
the peer doesn't hold (no key to check them with), and finally a flood of its own genuinely
signed requests. None of it may grow the guard with unverified nonces or push out the nonce
of the owner's real request, whose replay stays refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mydrive.crypto.keys import UserKeys
from mydrive.crypto.primitives import IdentityKey
from mydrive.errors import PeerUnavailable, PermissionDenied
from mydrive.formats.delegation import Delegation, SignedDelegation
from mydrive.transport.base import PeerAddress
from mydrive.transport.envelope import FRESHNESS_WINDOW_MS, ReplayGuard
from mydrive.transport.signed_delete import sign_delete
from mydrive.transport.signed_fetch import SignedFetch, sign_delegation, sign_fetch
from tests.clientnet import ClientNet, client_net
from tests.strategies import random_file

FLOOD = 300
MALLORY_DELEGATE = IdentityKey.from_seed(b"mallory's-own-delegate-key-32by!")


def _world(tmp_path: Path) -> tuple[ClientNet, UserKeys, UserKeys, str, bytes, bytes]:
    """Alice and Mallory each own a chunk on one peer: (net, alice, mallory, that peer,
    alice's chunk id, mallory's chunk id)."""
    net = client_net(tmp_path / "net", 4, seed=11)
    c = net.client()
    c.create_user("alice", "alice passphrase")
    c.create_user("mallory", "mallory passphrase")
    alice, mallory = c.login("alice", "alice passphrase"), c.login("mallory",
                                                                   "mallory passphrase")
    a = c.put(alice, random_file(tmp_path / "a.bin", 200_000), "/a.bin")
    m = c.put(mallory, random_file(tmp_path / "m.bin", 200_000), "/m.bin")
    c.close()
    for ch in a.chunks:
        for peer in ch.replicas:
            mine = [x.chunk_id for x in m.chunks if peer in x.replicas]
            if mine:
                return net, alice, mallory, peer, ch.chunk_id, mine[0]
    raise AssertionError("no peer holds a chunk of both")


def _addr(peer_id: str) -> PeerAddress:
    return PeerAddress(peer_id=peer_id, receiver_address=f"mem:{peer_id}",
                       sender_address=f"mem:{peer_id}")


def _fetch(net: ClientNet, peer: str, signed: SignedFetch) -> int:
    return len(list(net.transport.fetch(_addr(peer), signed)))


def _refused(call, error: type[Exception] = PermissionDenied) -> None:
    with pytest.raises(error):
        call()


def test_forged_requests_leave_the_guard_unchanged(tmp_path: Path) -> None:
    net, alice, mallory, peer, chunk, _ = _world(tmp_path)
    served = net.transport.peers[peer]
    assert served.deleter is not None
    fetch_guard, delete_guard = served.server.replay_guard, served.deleter.replay_guard
    real = sign_fetch(alice.identity, chunk_id=chunk, target_peer_id=peer,
                      segment_indices=[], clock=net.clock)
    assert _fetch(net, peer, real) > 0
    before = (len(fetch_guard), len(delete_guard))
    assert before == (1, 0)

    forged_delegation = sign_delegation(mallory.identity, Delegation(
        owner_public_key=mallory.identity.public_bytes(),
        delegate_public_key=MALLORY_DELEGATE.public_bytes(), delegate_peer_id=peer,
        chunk_ids=(chunk,), issued_ms=net.clock.now_ms(),
        not_after_ms=net.clock.now_ms() + 60_000))
    # The same body claiming to be Alice's: her key inside, Mallory's signature on it.
    claimed = Delegation.decode(forged_delegation.body)
    claimed = Delegation(alice.identity.public_bytes(), claimed.delegate_public_key,
                         claimed.delegate_peer_id, claimed.chunk_ids, claimed.issued_ms,
                         claimed.not_after_ms)
    as_alice = SignedDelegation(body=claimed.encode(), signature=forged_delegation.signature)
    for _ in range(FLOOD):
        mine = sign_fetch(mallory.identity, chunk_id=chunk, target_peer_id=peer,
                          segment_indices=[], clock=net.clock)
        _refused(lambda: _fetch(net, peer, mine))  # her key, Alice's chunk
        junk = SignedFetch(request=mine.request, signature=os.urandom(64))
        _refused(lambda: _fetch(net, peer, junk))
        delegated = SignedFetch(request=mine.request,
                                signature=MALLORY_DELEGATE.sign(b"mydrive-fetch-v1" +
                                                                mine.request),
                                delegation=as_alice.encode())
        _refused(lambda: _fetch(net, peer, delegated))
        held = sign_delete(mallory.identity, chunk_ids=[chunk], target_peer_id=peer,
                           clock=net.clock)
        _refused(lambda: net.transport.delete_chunks(_addr(peer), held))
        # Chunks this peer doesn't hold: no owner key to check against; answered "absent".
        unheld = sign_delete(mallory.identity, chunk_ids=[os.urandom(32)],
                             target_peer_id=peer, clock=net.clock)
        assert net.transport.delete_chunks(_addr(peer), unheld).removed == ()
    assert (len(fetch_guard), len(delete_guard)) == before
    with pytest.raises(PermissionDenied, match="replayed fetch"):
        _fetch(net, peer, real)
    assert net.chunk_store(peer).has(chunk)


def test_a_member_flooding_genuine_requests_cannot_push_out_a_nonce(tmp_path: Path) -> None:
    """Mallory's own fetches verify, so their nonces are kept; once the guard is full she is
    refused (try later), and Alice's nonce stays until her request is stale."""
    net, alice, mallory, peer, chunk, mallorys = _world(tmp_path)
    server = net.transport.peers[peer].server
    server.replay_guard = guard = ReplayGuard(max_entries=50)
    real = sign_fetch(alice.identity, chunk_id=chunk, target_peer_id=peer,
                      segment_indices=[0], clock=net.clock)
    assert _fetch(net, peer, real) == 1
    refused = 0
    for _ in range(FLOOD):
        net.clock.advance_ms(100)  # the flood spans 30 s, inside Alice's window
        mine = sign_fetch(mallory.identity, chunk_id=mallorys, target_peer_id=peer,
                          segment_indices=[0], clock=net.clock)
        try:
            _fetch(net, peer, mine)
        except PeerUnavailable:
            refused += 1
    with pytest.raises(PermissionDenied, match="replayed fetch"):
        _fetch(net, peer, real)
    assert len(guard) == 50 and refused == FLOOD - 49
    # Once Alice's request is stale her nonce goes; the guard drains as the window passes.
    net.clock.advance_ms(FRESHNESS_WINDOW_MS - 30_000 + 1)
    with pytest.raises(PermissionDenied, match="stale fetch"):
        _fetch(net, peer, real)
    net.clock.advance_ms(FRESHNESS_WINDOW_MS)
    again = sign_fetch(mallory.identity, chunk_id=mallorys, target_peer_id=peer,
                       segment_indices=[0], clock=net.clock)
    assert _fetch(net, peer, again) == 1
    assert len(guard) == 1
