"""Metadata written by its owner and verified by everyone: each attack of issue 11 part A on
the client (ls, get, login, rm, gc), with what it broke before documents were signed.

A dishonest peer's only way into another peer's metadata is replication, which copies its
documents as they are; these tests put such documents straight into the victim peer's store
(SQLite), exactly what replication would deliver. tests/adversarial/test_couchdb_metadata.py
does the same through real CouchDB replication.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from mydrive.client import PeerClient
from mydrive.crypto import keys as keyslib
from mydrive.crypto import primitives as crypto
from mydrive.crypto.primitives import new_kdf_params
from mydrive.errors import (
    DecryptionFailed,
    UntrustedMetadata,
    UserExists,
    WrongPassphrase,
)
from mydrive.formats.filerecord import FileRecord
from mydrive.formats.tombstone import Tombstone
from mydrive.metadata.signed import sign_document, verified_key
from tests.clientnet import ClientNet, client_net
from tests.strategies import FAST_KDF, random_file

PASS = "alice passphrase"
EVIL = "mallory passphrase"


def _world(tmp_path: Path) -> tuple[ClientNet, PeerClient, keyslib.UserKeys]:
    net = client_net(tmp_path / "net")
    c = net.client()
    c.create_user("alice", PASS)
    return net, c, c.login("alice", PASS)


def _forget_verified(c: PeerClient, *doc_ids: str) -> None:
    """Make this peer one that never verified these documents (a fresh replica)."""
    for doc_id in doc_ids:
        c.store.delete_local(verified_key(doc_id))


def _mallory(name: str = "alice") -> tuple[keyslib.UserRecord, keyslib.UserKeys]:
    """A dishonest member's own account: its own passphrase, master key and identity."""
    return keyslib.create_user(name, EVIL, kdf_params=new_kdf_params(**FAST_KDF))


# ---- content substitution -------------------------------------------------------------

def test_swapped_names_never_serve_other_content(tmp_path: Path) -> None:
    """Swapping the name fields of x's and y's documents: get x gives x (verified copy) or
    a refusal naming the document, never y's bytes. (Before: y's content, exit 0.)"""
    net, c, a = _world(tmp_path)
    x = c.put(a, random_file(tmp_path / "x.txt", 30_000), "/docs/x.txt")
    y = c.put(a, random_file(tmp_path / "y.txt", 30_000), "/docs/y.txt")
    dx, dy = c.store.get(x.doc_id), c.store.get(y.doc_id)
    for field in ("encrypted_path", "path_tag"):
        dx[field], dy[field] = dy[field], dx[field]
    c.store.put(x.doc_id, dx)
    c.store.put(y.doc_id, dy)
    got, _ = c.get(a, "/docs/x.txt", out_dir=tmp_path / "o1")
    assert got.read_bytes() == (tmp_path / "x.txt").read_bytes()
    _forget_verified(c, x.doc_id, y.doc_id)
    assert c.list_files(a) == []
    with pytest.raises(UntrustedMetadata, match=f"file document {y.doc_id} is not used"):
        c.get(a, "/docs/x.txt", out_dir=tmp_path / "o2")
    assert not (tmp_path / "o2" / "docs" / "x.txt").exists()


def test_name_bound_to_its_file_id(tmp_path: Path) -> None:
    """Even a document the owner signed can't carry another file's encrypted name: the name's
    AAD binds its file id (defence in depth below the signature)."""
    net, c, a = _world(tmp_path)
    x = c.put(a, random_file(tmp_path / "x.txt", 20_000), "/x.txt")
    y = c.put(a, random_file(tmp_path / "y.txt", 20_000), "/y.txt")
    swapped = replace(x, encrypted_path=y.encrypted_path, path_tag=y.path_tag)
    c.store.put(x.doc_id, sign_document(x.doc_id, swapped.to_doc(), a.identity))
    c.store.put_local(verified_key(x.doc_id), c.store.get(x.doc_id))
    with pytest.raises(DecryptionFailed, match="its name does not decrypt"):
        c.list_files(a)


# ---- forged and stolen file documents ----------------------------------------------------

def test_file_document_signed_by_another_key_is_skipped(tmp_path: Path) -> None:
    """A document under alice's id prefix, naming alice as owner, signed by mallory: ls skips
    it, get of the path it claims is refused. (Before: listed and used as alice's.)"""
    net, c, a = _world(tmp_path)
    real = c.put(a, random_file(tmp_path / "r.bin", 20_000), "/r.bin")
    _, evil = _mallory("mallory")
    forged = replace(real, file_id=b"\x42" * 16)
    c.store.put(forged.doc_id, sign_document(forged.doc_id, forged.to_doc(), evil.identity))
    assert [e.path for e in c.list_files(a)] == ["/r.bin"]
    assert c.find(a, "/r.bin").file_id == real.file_id


def test_file_document_under_another_id_is_refused(tmp_path: Path) -> None:
    """alice's signed document copied under another id (or another owner's prefix) does not
    verify there: the id is signed."""
    net, c, a = _world(tmp_path)
    real = c.put(a, random_file(tmp_path / "r.bin", 20_000), "/r.bin")
    moved = FileRecord.from_doc(c.store.get(real.doc_id))
    moved_id = replace(moved, file_id=b"\x43" * 16).doc_id
    c.store.put(moved_id, c.store.get(real.doc_id))
    assert [e.path for e in c.list_files(a)] == ["/r.bin"]


# ---- users -------------------------------------------------------------------------------

def test_forged_user_document_does_not_lock_the_user_out(tmp_path: Path) -> None:
    """mallory's own user document for the name alice, with a huge updated_ms, arrives: alice
    still logs in with her passphrase, mallory's does not work. (Before: "wrong passphrase"
    for alice on every peer.)"""
    net, c, a = _world(tmp_path)
    record, evil = _mallory()
    forged = replace(record, updated_ms=2**52)
    c.store.put("user:alice", sign_document("user:alice", forged.to_doc(), evil.identity))
    assert c.login("alice", PASS).user_id == a.user_id
    with pytest.raises(WrongPassphrase):
        c.login("alice", EVIL)


def test_replayed_user_document_keeps_the_new_passphrase(tmp_path: Path) -> None:
    """After a rotation, the old signed user document replayed: the old passphrase stays
    dead. (A signature alone would accept it: it is genuinely alice's.)"""
    net, c, a = _world(tmp_path)
    old_doc = c.store.get("user:alice")
    net.clock.advance_ms(1000)
    c.rotate_passphrase("alice", PASS, "new passphrase")
    c.store.put("user:alice", old_doc)
    with pytest.raises(WrongPassphrase):
        c.login("alice", PASS)
    assert c.login("alice", "new passphrase").user_id == a.user_id


def test_deleted_or_unsigned_user_document_changes_nothing(tmp_path: Path) -> None:
    """A user document deleted by a replica, or replaced by an unsigned (version 1) one that
    mallory wrapped: alice logs in as before."""
    net, c, a = _world(tmp_path)
    c.store.delete("user:alice")
    assert c.login("alice", PASS).user_id == a.user_id
    record, _ = _mallory()
    legacy = {**replace(record, version=1).to_doc()}
    c.store.put("user:alice", legacy)
    assert c.login("alice", PASS).user_id == a.user_id


def test_deleted_user_name_cannot_be_taken_again(tmp_path: Path) -> None:
    """After a replica deletes user:alice, creating a new alice on a peer that knew her is
    refused, so her pin is never replaced by a new key."""
    net, c, a = _world(tmp_path)
    c.store.delete("user:alice")
    with pytest.raises(UserExists):
        c.create_user("alice", "another passphrase")
    assert c.login("alice", PASS).user_id == a.user_id


def test_tampered_user_document_refused_on_a_fresh_peer(tmp_path: Path) -> None:
    """A peer that never verified alice and receives a tampered document refuses it clearly
    (it can't know the right one), instead of using it."""
    net, c, a = _world(tmp_path)
    doc = c.store.get("user:alice")
    doc["kdf"] = {**doc["kdf"], "time_cost": 2}
    c.store.put("user:alice", doc)
    _forget_verified(c, "user:alice")
    with pytest.raises(UntrustedMetadata, match="signature does not verify"):
        c.login("alice", PASS)


# ---- tombstones and gc -------------------------------------------------------------------

def _pending_tomb(net: ClientNet, c: PeerClient, a: keyslib.UserKeys,
                  tmp_path: Path) -> tuple[FileRecord, str]:
    """A removed file whose tombstone stays pending: one replica was down during rm."""
    dead = c.put(a, random_file(tmp_path / "dead.bin", 40_000), "/dead.bin")
    down = dead.chunks[0].replicas[0]
    net.transport.down.add(down)
    c.remove(a, "/dead.bin")
    net.transport.down.discard(down)
    return dead, down


@pytest.mark.parametrize("verified_here", [True, False])
def test_rewritten_tombstone_deletes_no_live_chunk(tmp_path: Path, verified_here: bool) -> None:
    """An old tombstone whose pending list is rewritten to a live file's chunks, while the
    live file's document lists bogus chunks (so the live-set check can't help): gc uses the
    peer's verified tombstone (removing only the dead file's chunks) or, on a peer without
    one, refuses it; the live file comes back whole either way. (Before: gc deleted the live
    file's chunks, ls still listed it and get failed with exit 7.)"""
    net, c, a = _world(tmp_path)
    live = c.put(a, random_file(tmp_path / "live.bin", 60_000), "/live.bin")
    dead, down = _pending_tomb(net, c, a, tmp_path)
    tomb_id = Tombstone.for_record(dead, 0).doc_id
    tomb_doc = c.store.get(tomb_id)
    tomb_doc["pending"] = {p: [ch.chunk_id.hex() for ch in live.chunks if p in ch.replicas]
                           for ch in live.chunks for p in ch.replicas}
    c.store.put(tomb_id, tomb_doc)
    if not verified_here:
        _forget_verified(c, tomb_id)
    live_doc = c.store.get(live.doc_id)
    live_doc["chunks"] = [{**ch, "chunk_id": "00" * 32} for ch in live_doc["chunks"]]
    c.store.put(live.doc_id, live_doc)
    report = c.collect_garbage(a)
    if verified_here:
        assert report.errors == [] and report.tombstones_done == 1
        assert all(net.holders(ch.chunk_id) == set() for ch in dead.chunks)
    else:
        assert any("signature does not verify" in e for e in report.errors)
        assert report.chunks_removed == 0
    assert all(net.holders(ch.chunk_id) == set(ch.replicas) for ch in live.chunks)
    got, _ = c.get(a, "/live.bin", out_dir=tmp_path / "out")  # from the verified copy
    assert got.read_bytes() == (tmp_path / "live.bin").read_bytes()


def test_tombstone_signed_over_another_file_is_refused(tmp_path: Path) -> None:
    """alice's genuine tombstone of one file copied under another file's tombstone id does
    not verify there, so it can't order that file's removal."""
    net, c, a = _world(tmp_path)
    live = c.put(a, random_file(tmp_path / "live.bin", 30_000), "/live.bin")
    dead, _ = _pending_tomb(net, c, a, tmp_path)
    stolen = c.store.get(Tombstone.for_record(dead, 0).doc_id)
    c.store.put(Tombstone.for_record(live, 0).doc_id, stolen)
    report = c.collect_garbage(a)
    assert report.files_finished == 0
    assert [e.path for e in c.list_files(a)] == ["/live.bin"]


def test_replayed_older_tombstone_is_harmless(tmp_path: Path) -> None:
    """An older, genuinely signed revision of a tombstone (more pending) replayed after gc
    crossed peers off: only the removed file's chunks are asked for again (absent)."""
    net, c, a = _world(tmp_path)
    live = c.put(a, random_file(tmp_path / "live.bin", 30_000), "/live.bin")
    dead, down = _pending_tomb(net, c, a, tmp_path)
    tomb_id = Tombstone.for_record(dead, 0).doc_id
    older = c.store.get(tomb_id)
    assert c.collect_garbage(a).tombstones_done == 1
    c.store.put(tomb_id, older)
    report = c.collect_garbage(a)
    assert report.chunks_removed == 0
    assert all(net.holders(ch.chunk_id) == set(ch.replicas) for ch in live.chunks)


def test_rm_only_deletes_what_the_owner_signed(tmp_path: Path) -> None:
    """A tombstone lists exactly the chunks of the owner's verified record: a forged file
    document can't widen what rm deletes."""
    net, c, a = _world(tmp_path)
    live = c.put(a, random_file(tmp_path / "live.bin", 30_000), "/live.bin")
    victim = c.put(a, random_file(tmp_path / "v.bin", 30_000), "/v.bin")
    doc = c.store.get(victim.doc_id)
    doc["chunks"] = doc["chunks"] + c.store.get(live.doc_id)["chunks"]
    c.store.put(victim.doc_id, doc)  # falls back to the verified copy for the rm
    c.remove(a, "/v.bin")
    tomb = Tombstone.from_doc(c.store.get(Tombstone.for_record(victim, 0).doc_id))
    assert tomb.finished
    assert all(net.holders(ch.chunk_id) == set(ch.replicas) for ch in live.chunks)


def test_forged_tombstone_from_another_key_is_ignored(tmp_path: Path) -> None:
    """A tombstone for alice's file signed by mallory neither removes the document nor any
    chunk."""
    net, c, a = _world(tmp_path)
    rec = c.put(a, random_file(tmp_path / "f.bin", 30_000), "/f.bin")
    _, evil = _mallory("mallory")
    tomb = Tombstone.for_record(rec, 0)
    c.store.put(tomb.doc_id, sign_document(tomb.doc_id, tomb.to_doc(), evil.identity))
    report = c.collect_garbage(a)
    assert report.files_finished == 0 and report.chunks_removed == 0
    assert [e.path for e in c.list_files(a)] == ["/f.bin"]
    assert all(net.holders(ch.chunk_id) for ch in rec.chunks)


# ---- documents from before signing -------------------------------------------------------

def test_legacy_user_migrated_at_login_and_legacy_files_refused(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A version 1 user document (unsigned, random user id) is migrated by the first login
    (signed, id derived from the key, same passphrase); version 1 file documents are not
    used, with a message saying so."""
    net = client_net(tmp_path / "net")
    c = net.client()
    record, keys = keyslib.create_user("olduser", PASS, kdf_params=new_kdf_params(**FAST_KDF))
    old_id = "ab" * 16
    keys = keyslib.derive_user_keys(old_id, keys.master_key)
    kek = crypto.derive_passphrase_key(PASS, record.kdf)
    legacy = replace(record, user_id=old_id, version=1,
                     wrapped_master_key=crypto.wrap_key(kek, keys.master_key, old_id.encode()))
    c.store.put("user:olduser", {**legacy.to_doc(), "updated_ms": 5})
    c.store.put("file:0123", {"type": "file", "version": 1, "owner_id": old_id})
    with caplog.at_level("WARNING"):
        migrated = c.login("olduser", PASS)
    assert migrated.user_id == keyslib.user_id_for(keys.identity.public_bytes()) != old_id
    assert "files stored before, in unsigned version 1 documents, are not used" in caplog.text
    doc = c.store.get("user:olduser")
    assert doc["version"] == 2 and "signature" in doc
    assert c.login("olduser", PASS).user_id == migrated.user_id
    c.store.put("file:4567", {"type": "file", "version": 1, "owner_id": migrated.user_id})
    caplog.clear()
    with caplog.at_level("WARNING"):
        assert c.list_files(migrated) == []
    assert "file:4567 is a version 1 document (unsigned" in caplog.text
    assert json.dumps(doc).count("signature") == 1
