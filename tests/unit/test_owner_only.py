"""Owner only: another user, or a storage peer acting alone, gets nothing of A's files.

Each attempt must fail with its precise error, never an empty result that looks like success
where a refusal is due.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import unwrap_file_key
from mydrive.errors import (
    BadRequest,
    DecryptionFailed,
    PermissionDenied,
    UnknownFile,
    UnknownUser,
    UserExists,
    WrongPassphrase,
)
from mydrive.transport.signed_fetch import FRESHNESS_WINDOW_MS, SignedFetch, sign_fetch
from tests.clientnet import ClientNet, client_net
from tests.strategies import random_file

PASS_A = "alice passphrase"
PASS_B = "bob passphrase"


@pytest.fixture
def world(tmp_path: Path):
    net = client_net(tmp_path / "net")
    c = net.client()
    c.create_user("alice", PASS_A)
    c.create_user("bob", PASS_B)
    a, b = c.login("alice", PASS_A), c.login("bob", PASS_B)
    src = random_file(tmp_path / "secret.bin", 120_000)
    rec = c.put(a, src, "/private/secret.bin")
    c.put(b, random_file(tmp_path / "bob.bin", 1_000), "/bob.bin")
    yield net, c, a, b, rec, src
    c.close()


def _addr(net: ClientNet, c, peer_id: str):
    return {p.peer_id: p.address for p in c.known_peers()}[peer_id]


def _fetch(net: ClientNet, c, peer_id: str, signed: SignedFetch) -> list:
    return list(net.transport.fetch(_addr(net, c, peer_id), signed))


def test_other_user_lists_and_inspects_only_own_files(world) -> None:
    """B's ls shows only B's file; B's inspect, get and rm of A's path are UnknownFile."""
    net, c, a, b, rec, src = world
    assert [e.path for e in c.list_files(b)] == ["/bob.bin"]
    assert [e.path for e in c.list_files(a)] == ["/private/secret.bin"]
    for attempt in (lambda: c.inspect(b, "/private/secret.bin"),
                    lambda: c.get(b, "/private/secret.bin", out_dir=net.dirs[0].root / "o"),
                    lambda: c.remove(b, "/private/secret.bin"),
                    lambda: c.remove(b, "/private", recursive=True)):
        with pytest.raises(UnknownFile):
            attempt()
    assert not (net.dirs[0].root / "o" / "private").exists()


def test_other_user_cannot_fetch_owner_chunk(world) -> None:
    """B signing a fetch of A's chunk for the right peer, now, gets PermissionDenied."""
    net, c, a, b, rec, src = world
    chunk = rec.chunks[0]
    peer = chunk.replicas[0]
    signed = sign_fetch(b.identity, chunk_id=chunk.chunk_id, target_peer_id=peer,
                        segment_indices=[], clock=net.clock)
    with pytest.raises(PermissionDenied, match="not signed by the chunk's owner"):
        _fetch(net, c, peer, signed)
    assert net.transport.peers[peer].metrics.value("sender_segments_served_total") == 0


def test_other_user_cannot_decrypt_owner_metadata(world) -> None:
    """With A's file document in hand, B's keys unwrap neither A's file key nor A's file name."""
    net, c, a, b, rec, src = world
    with pytest.raises(DecryptionFailed):
        unwrap_file_key(b, rec.file_id, rec.wrapped_file_key)
    with pytest.raises(DecryptionFailed):
        crypto.decrypt_name(b.name_key, rec.encrypted_path)
    doc = c.store.get(rec.doc_id)
    doc["owner_id"] = b.user_id  # tampered ownership: the signature no longer verifies
    c.store.put(rec.doc_id, doc)
    assert [e.path for e in c.list_files(b)] == ["/bob.bin"]  # skipped, nothing decrypted
    assert [e.path for e in c.list_files(a)] == ["/private/secret.bin"]  # A: verified copy


def test_storage_peer_alone_cannot_fetch_or_decrypt(world) -> None:
    """A peer holding A's chunk can't get others from a replica, nor decrypt what it holds."""
    net, c, a, b, rec, src = world
    chunk = rec.chunks[0]
    holder, other = chunk.replicas
    peer_key = crypto.IdentityKey.from_seed(bytes(range(32)))  # the peer's own key
    signed = sign_fetch(peer_key, chunk_id=chunk.chunk_id, target_peer_id=other,
                        segment_indices=[], clock=net.clock)
    with pytest.raises(PermissionDenied, match="not signed by the chunk's owner"):
        _fetch(net, c, other, signed)
    unsigned = SignedFetch(request=signed.request, signature=b"")
    with pytest.raises(PermissionDenied, match="not signed by the chunk's owner"):
        _fetch(net, c, other, unsigned)
    # What it holds is ciphertext under a key it never saw: any guess fails authentication.
    store = net.chunk_store(holder)
    ciphertext = b"".join(store.read_segment(chunk.chunk_id, i)
                          for i in range(store.header(chunk.chunk_id).segment_count))
    with pytest.raises(DecryptionFailed):
        crypto.decrypt_chunk(bytes(32), rec.file_id, 0, rec.plan.chunk_count, ciphertext)
    assert src.read_bytes()[:1000] not in ciphertext


def test_fetch_replayed_stale_or_misdirected_refused(world) -> None:
    """A's own signed fetch: replayed, stale, future-dated or sent to another peer is refused."""
    net, c, a, b, rec, src = world
    chunk = rec.chunks[0]
    x, y = chunk.replicas

    def signed_for(peer: str, skew_ms: int = 0) -> SignedFetch:
        class Skewed:
            def now_ms(self) -> int:
                return net.clock.now_ms() + skew_ms

            def monotonic_s(self) -> float:
                return net.clock.monotonic_s()

        return sign_fetch(a.identity, chunk_id=chunk.chunk_id, target_peer_id=peer,
                          segment_indices=[], clock=Skewed())

    good = signed_for(x)
    assert len(_fetch(net, c, x, good)) == len(chunk.segment_digests)
    with pytest.raises(PermissionDenied, match="replayed fetch"):
        _fetch(net, c, x, good)
    with pytest.raises(PermissionDenied, match="signed for another peer"):
        _fetch(net, c, y, signed_for(x))
    with pytest.raises(PermissionDenied, match="stale fetch"):
        _fetch(net, c, x, signed_for(x, skew_ms=-(FRESHNESS_WINDOW_MS + 1)))
    with pytest.raises(PermissionDenied, match="stale fetch"):
        _fetch(net, c, x, signed_for(x, skew_ms=FRESHNESS_WINDOW_MS + 1))
    late = signed_for(y)
    net.clock.advance_ms(FRESHNESS_WINDOW_MS + 1)
    with pytest.raises(PermissionDenied, match="stale fetch"):
        _fetch(net, c, y, late)


def test_client_user_names_validated_and_unique(tmp_path: Path) -> None:
    """Bad names are BadRequest, a second 'alice' is UserExists, nothing changes either way."""
    net = client_net(tmp_path / "net", 1)
    c = net.client()
    c.create_user("alice", PASS_A)
    before = c.store.get("user:alice")
    with pytest.raises(UserExists, match="'alice' already exists"):
        c.create_user("alice", "another passphrase")
    assert c.store.get("user:alice") == before
    for bad in ("", "-x", "a b", "a/b", "user:x", "é", "x" * 65, "a\n"):
        with pytest.raises(BadRequest, match="user name"):
            c.create_user(bad, PASS_A)
    assert [d for d, _ in c.store.list_prefix("user:")] == ["user:alice"]


def test_client_login_errors_are_precise(world) -> None:
    """Wrong passphrase is WrongPassphrase and unknown user UnknownUser, never an empty list."""
    net, c, a, b, rec, src = world
    with pytest.raises(WrongPassphrase, match="wrong passphrase for user 'alice'"):
        c.login("alice", PASS_B)
    with pytest.raises(UnknownUser, match="no user 'carol'"):
        c.login("carol", PASS_A)
