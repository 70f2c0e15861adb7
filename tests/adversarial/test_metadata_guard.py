"""The metadata guard against what a dishonest peer's replica delivers: deletions no
tombstone justifies, unsigned, tampered and replayed revisions, names claimed twice.

The guard runs in every CouchDB peer's replication supervisor on the changes that arrived;
here it reviews a SQLite store into which the test writes what replication would deliver (it
uses only the MetadataStore interface). The real-network version is
tests/adversarial/test_couchdb_metadata.py. Before the guard, each of these changes simply
took effect (a deleted file document took the wrapped file key with it: the file was lost).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mydrive.client import PeerClient
from mydrive.crypto import keys as keyslib
from mydrive.crypto.primitives import new_kdf_params
from mydrive.formats.filerecord import FileRecord
from mydrive.formats.tombstone import MAX_TOMBSTONE_AGE_MS, Tombstone
from mydrive.metadata.guard import MetadataGuard
from mydrive.metadata.signed import sign_document, verified_key
from tests.clientnet import ClientNet, client_net
from tests.strategies import FAST_KDF, random_file

PASS = "alice passphrase"


def _world(tmp_path: Path) -> tuple[ClientNet, PeerClient, keyslib.UserKeys, FileRecord,
                                    MetadataGuard]:
    net = client_net(tmp_path / "net")
    c = net.client()
    c.create_user("alice", PASS)
    a = c.login("alice", PASS)
    rec = c.put(a, random_file(tmp_path / "f.bin", 30_000), "/f.bin")
    guard = MetadataGuard(c.store, now_ms=net.clock.now_ms)
    assert guard.review(rec.doc_id) == "unchanged"  # put kept the verified copy already
    return net, c, a, rec, guard


def test_guard_restores_file_document_deleted_without_tombstone(tmp_path: Path) -> None:
    """A replicated deletion of a file document that no signed tombstone orders is undone:
    the last verified revision is written back and the file downloads. (Before: the file,
    with its wrapped key, was gone on every peer.)"""
    net, c, a, rec, guard = _world(tmp_path)
    original = c.store.get(rec.doc_id)
    c.store.delete(rec.doc_id)
    assert guard.review(rec.doc_id) == "restored"
    assert c.store.get(rec.doc_id) == original
    got, _ = c.get(a, "/f.bin", out_dir=tmp_path / "out")
    assert got.read_bytes() == (tmp_path / "f.bin").read_bytes()


def test_guard_accepts_deletion_ordered_by_owner_tombstone(tmp_path: Path) -> None:
    """The owner's rm (valid tombstone, then deletion) is accepted: nothing is restored and
    the verified copy is dropped."""
    net, c, a, rec, guard = _world(tmp_path)
    c.store.put_local(verified_key(rec.doc_id), c.store.get(rec.doc_id))  # as on a replica
    c.remove(a, "/f.bin")
    c.store.put_local(verified_key(rec.doc_id), sign_document(rec.doc_id, rec.to_doc(),
                                                               a.identity))
    assert guard.review(rec.doc_id) == "deletion-accepted"
    assert c.store.get(rec.doc_id) is None
    assert c.store.get_local(verified_key(rec.doc_id)) is None


def test_guard_rejects_tombstone_of_another_signer(tmp_path: Path) -> None:
    """A deletion next to a tombstone signed by someone else is undone."""
    net, c, a, rec, guard = _world(tmp_path)
    _, evil = keyslib.create_user("mallory", "x", kdf_params=new_kdf_params(**FAST_KDF))
    tomb = Tombstone.for_record(rec, 0)
    c.store.put(tomb.doc_id, sign_document(tomb.doc_id, tomb.to_doc(), evil.identity))
    c.store.delete(rec.doc_id)
    assert guard.review(rec.doc_id) == "restored"
    assert c.store.get(rec.doc_id) is not None


def test_guard_restores_tampered_and_unsigned_revisions(tmp_path: Path) -> None:
    """A tampered revision and an unsigned one are both overwritten by the verified one."""
    net, c, a, rec, guard = _world(tmp_path)
    original = c.store.get(rec.doc_id)
    for bad in ({**original, "size_bytes": 1},
                {k: v for k, v in original.items() if k != "signature"},
                {"type": 42}):
        c.store.put(rec.doc_id, bad)
        assert guard.review(rec.doc_id) == "restored"
        assert c.store.get(rec.doc_id) == original


def test_guard_restores_newer_revision_over_replayed_older(tmp_path: Path) -> None:
    """A rename (newer updated_ms) replayed back to the older, genuinely signed revision:
    the newer one is written back."""
    net, c, a, rec, guard = _world(tmp_path)
    older = c.store.get(rec.doc_id)
    renamed = replace(rec, updated_ms=rec.updated_ms + 10)
    newer = sign_document(rec.doc_id, renamed.to_doc(), a.identity)
    c.store.put(rec.doc_id, newer)
    assert guard.review(rec.doc_id) == "verified"
    c.store.put(rec.doc_id, older)
    assert guard.review(rec.doc_id) == "restored"
    assert c.store.get(rec.doc_id) == newer


def test_guard_never_fights_over_a_name_claimed_twice(tmp_path: Path) -> None:
    """A user document for the same name signed by another key: the store is left alone (no
    two peers can write back and forth), and this peer's readers keep the known user."""
    net, c, a, rec, guard = _world(tmp_path)
    assert guard.review("user:alice") == "unchanged"
    record, evil = keyslib.create_user("alice", "x", kdf_params=new_kdf_params(**FAST_KDF))
    other = sign_document("user:alice", replace(record, updated_ms=2**50).to_doc(),
                          evil.identity)
    c.store.put("user:alice", other)
    assert guard.review("user:alice") == "kept-other-key"
    assert c.store.get("user:alice") == other
    assert c.login("alice", PASS).user_id == a.user_id


def test_guard_restores_deleted_user_document(tmp_path: Path) -> None:
    """Users are never deleted: a replicated deletion is undone."""
    net, c, a, rec, guard = _world(tmp_path)
    original = c.store.get("user:alice")
    c.store.delete("user:alice")
    assert guard.review("user:alice") == "restored"
    assert c.store.get("user:alice") == original


def test_guard_keeps_tombstone_until_it_expires(tmp_path: Path) -> None:
    """A tombstone deleted early is written back; once expired, its deletion is accepted."""
    net, c, a, rec, guard = _world(tmp_path)
    tomb = Tombstone.for_record(rec, net.clock.now_ms())
    c.store.put(tomb.doc_id, sign_document(tomb.doc_id, tomb.to_doc(), a.identity))
    assert guard.review(tomb.doc_id) == "verified"
    assert c.store.get(rec.doc_id) is None  # the tombstone orders the file's removal
    c.store.delete(tomb.doc_id)
    assert guard.review(tomb.doc_id) == "restored"
    net.clock.advance_ms(MAX_TOMBSTONE_AGE_MS + 1)
    c.store.delete(tomb.doc_id)
    assert guard.review(tomb.doc_id) == "deletion-accepted"


def test_guard_leaves_unknown_invalid_document_alone(tmp_path: Path) -> None:
    """A forged document this peer never verified is not used and not written back over."""
    net, c, a, rec, guard = _world(tmp_path)
    c.store.put("file:ab:cd", {"type": "file", "version": 2})
    assert guard.review("file:ab:cd") == "refused"
    assert guard.review("peer:x") == "not-signed-kind"
