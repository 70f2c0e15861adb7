"""rm, owner-signed DeleteChunks and the tombstone garbage collector, on the in-memory network."""

from __future__ import annotations

from pathlib import Path

import pytest

from mydrive.errors import BadRequest, PermissionDenied, UnknownFile
from mydrive.formats.filerecord import FileRecord
from mydrive.formats.tombstone import TOMB_PREFIX, Tombstone
from mydrive.metadata.signed import sign_document
from mydrive.transport.signed_delete import MAX_DELETE_CHUNK_IDS, SignedDelete, sign_delete
from mydrive.transport.signed_fetch import FRESHNESS_WINDOW_MS
from mydrive.transport.wire import mydrive_pb2 as pb
from tests.clientnet import ClientNet, client_net
from tests.strategies import random_file

PASS_A = "alice passphrase"
PASS_B = "bob passphrase"


def _setup(tmp_path: Path) -> tuple[ClientNet, object, object]:
    net = client_net(tmp_path / "net")
    c = net.client()
    c.create_user("alice", PASS_A)
    c.create_user("bob", PASS_B)
    return net, c, c.login("alice", PASS_A)


def _all_chunk_ids(record: FileRecord) -> list[bytes]:
    return [ch.chunk_id for ch in record.chunks]


def test_rm_removes_document_and_every_replica(tmp_path: Path) -> None:
    """After rm the file is gone from ls and no replica peer holds any of its chunks."""
    net, c, a = _setup(tmp_path)
    rec = c.put(a, random_file(tmp_path / "f.bin", 200_000), "/docs/f.bin")
    keep = c.put(a, random_file(tmp_path / "g.bin", 100_000), "/docs/g.bin")
    assert all(net.holders(cid) for cid in _all_chunk_ids(rec))
    result = c.remove(a, "/docs/f.bin")
    assert result.paths == ("/docs/f.bin",)
    assert result.gc.pending == {} and result.gc.tombstones_done == 1
    assert result.gc.chunks_removed == sum(len(ch.replicas) for ch in rec.chunks)
    assert [e.path for e in c.list_files(a)] == ["/docs/g.bin"]
    assert all(net.holders(cid) == set() for cid in _all_chunk_ids(rec))
    assert c.store.get(rec.doc_id) is None
    assert _finished_tombstones(c) == [rec.file_id]  # kept until it expires
    path, _ = c.get(a, "/docs/g.bin", out_dir=tmp_path / "out")
    assert path.read_bytes() == (tmp_path / "g.bin").read_bytes()
    assert all(net.holders(cid) for cid in _all_chunk_ids(keep))


def test_rm_folder_needs_recursive(tmp_path: Path) -> None:
    """rm of a folder needs --recursive and then removes exactly that folder's files."""
    net, c, a = _setup(tmp_path)
    for name in ("/d/x", "/d/sub/y", "/dd/z"):
        c.put(a, random_file(tmp_path / "src", 5_000), name)
    with pytest.raises(BadRequest, match="is a folder with 2 file"):
        c.remove(a, "/d")
    with pytest.raises(UnknownFile, match="no file or folder '/nope'"):
        c.remove(a, "/nope", recursive=True)
    result = c.remove(a, "/d", recursive=True)
    assert result.paths == ("/d/sub/y", "/d/x")
    assert [e.path for e in c.list_files(a)] == ["/dd/z"]


def test_rm_with_replica_down_collects_when_it_returns(tmp_path: Path) -> None:
    """A peer down during rm keeps its chunks until it is back and gc runs; then none remain."""
    net, c, a = _setup(tmp_path)
    rec = c.put(a, random_file(tmp_path / "f.bin", 200_000), "/f.bin")
    victim = rec.chunks[0].replicas[0]
    net.transport.down.add(victim)
    result = c.remove(a, "/f.bin")
    assert result.gc.pending == {rec.file_id.hex(): [victim]}
    assert c.list_files(a) == []
    on_victim = [cid for cid in _all_chunk_ids(rec) if net.chunk_store(victim).has(cid)]
    assert on_victim, "the down peer still holds its chunks"
    assert all(net.holders(cid) <= {victim} for cid in _all_chunk_ids(rec))
    report = c.collect_garbage(a)  # still down: stays pending, nothing lost
    assert report.pending == {rec.file_id.hex(): [victim]} and report.chunks_removed == 0
    net.transport.down.discard(victim)
    report = c.collect_garbage(a)
    assert report.pending == {} and report.tombstones_done == 1
    assert report.chunks_removed == len(on_victim)
    assert all(net.holders(cid) == set() for cid in _all_chunk_ids(rec))
    assert _finished_tombstones(c) == [rec.file_id]


def _finished_tombstones(c) -> list[bytes]:
    tombs = [Tombstone.from_doc(d) for _, d in c.store.list_prefix(TOMB_PREFIX)]
    assert all(t.finished for t in tombs)
    return [t.file_id for t in tombs]


def test_gc_never_removes_chunk_of_live_file(tmp_path: Path) -> None:
    """A tombstone the owner signed naming a live file's chunks (a bug) leaves them alone."""
    net, c, a = _setup(tmp_path)
    live = c.put(a, random_file(tmp_path / "live.bin", 150_000), "/live.bin")
    dead = c.put(a, random_file(tmp_path / "dead.bin", 50_000), "/dead.bin")
    tomb = Tombstone.for_record(dead, net.clock.now_ms())
    pending = {p: ids + tuple(_all_chunk_ids(live)) for p, ids in tomb.pending.items()}
    for ch in live.chunks:
        for p in ch.replicas:
            pending[p] = pending.get(p, ()) + (ch.chunk_id,)
    forged = tomb.with_pending(pending, net.clock.now_ms())
    c.store.put(tomb.doc_id, sign_document(tomb.doc_id, forged.to_doc(), a.identity))
    report = c.collect_garbage(a)
    assert report.files_finished == 1  # the interrupted rm of /dead.bin is finished
    assert [e.path for e in c.list_files(a)] == ["/live.bin"]
    assert all(net.holders(cid) == set() for cid in _all_chunk_ids(dead))
    assert all(net.holders(cid) == set(ch.replicas) for ch in live.chunks
               for cid in [ch.chunk_id])
    path, _ = c.get(a, "/live.bin", out_dir=tmp_path / "out")
    assert path.read_bytes() == (tmp_path / "live.bin").read_bytes()


def test_gc_ignores_tombstone_not_signed_by_owner(tmp_path: Path) -> None:
    """A forged tombstone for A's file (signed by B) neither removes the file nor its chunks."""
    net, c, a = _setup(tmp_path)
    b = c.login("bob", PASS_B)
    rec = c.put(a, random_file(tmp_path / "f.bin", 50_000), "/f.bin")
    forged = Tombstone.for_record(rec, 0)
    c.store.put(forged.doc_id, sign_document(forged.doc_id, forged.to_doc(), b.identity))
    report = c.collect_garbage(a)
    assert report.errors == [f"{forged.doc_id}: signed by a key that is not its owner's; "
                             f"ignored"]
    assert [e.path for e in c.list_files(a)] == ["/f.bin"]
    assert all(net.holders(cid) for cid in _all_chunk_ids(rec))


def test_delete_by_other_user_refused(tmp_path: Path) -> None:
    """B can't rm A's file (UnknownFile) nor delete its chunks directly (PermissionDenied)."""
    net, c, a = _setup(tmp_path)
    b = c.login("bob", PASS_B)
    rec = c.put(a, random_file(tmp_path / "f.bin", 50_000), "/f.bin")
    with pytest.raises(UnknownFile):
        c.remove(b, "/f.bin")
    chunk = rec.chunks[0]
    peer = chunk.replicas[0]
    signed = sign_delete(b.identity, chunk_ids=[chunk.chunk_id], target_peer_id=peer,
                         clock=net.clock)
    with pytest.raises(PermissionDenied, match="not signed by the owner of every named chunk"):
        net.transport.delete_chunks(_addr(net, peer), signed)
    assert net.chunk_store(peer).has(chunk.chunk_id)
    assert net.transport.peers[peer].metrics.value("receiver_deletes_refused_total") == 1


def _addr(net: ClientNet, peer_id: str):
    return {p.peer_id: p.address for p in net.client().known_peers()}[peer_id]


def test_delete_mixing_owners_removes_nothing(tmp_path: Path) -> None:
    """A delete naming A's and B's chunks, signed by B, is refused whole: nothing removed."""
    net, c, a = _setup(tmp_path)
    b = c.login("bob", PASS_B)
    ra = c.put(a, random_file(tmp_path / "a.bin", 50_000), "/a.bin")
    rb = c.put(b, random_file(tmp_path / "b.bin", 50_000), "/b.bin")
    common = next(p for p in net.peer_ids
                  if any(p in ch.replicas for ch in ra.chunks)
                  and any(p in ch.replicas for ch in rb.chunks))
    ids = [ch.chunk_id for ch in ra.chunks + rb.chunks if common in ch.replicas]
    signed = sign_delete(b.identity, chunk_ids=ids, target_peer_id=common, clock=net.clock)
    with pytest.raises(PermissionDenied):
        net.transport.delete_chunks(_addr(net, common), signed)
    assert all(net.chunk_store(common).has(cid) for cid in ids)


def test_delete_replayed_stale_or_misdirected_refused(tmp_path: Path) -> None:
    """Replayed, stale, future-dated or other-peer deletes: PermissionDenied; junk: BadRequest."""
    net, c, a = _setup(tmp_path)
    rec = c.put(a, random_file(tmp_path / "f.bin", 50_000), "/f.bin")
    ch = rec.chunks[0]
    x, y = ch.replicas
    signed = sign_delete(a.identity, chunk_ids=[ch.chunk_id], target_peer_id=x, clock=net.clock)
    with pytest.raises(PermissionDenied, match="signed for another peer"):
        net.transport.delete_chunks(_addr(net, y), signed)
    assert net.chunk_store(y).has(ch.chunk_id)
    net.clock.advance_ms(FRESHNESS_WINDOW_MS + 1)
    with pytest.raises(PermissionDenied, match="stale delete"):
        net.transport.delete_chunks(_addr(net, x), signed)
    future = sign_delete(a.identity, chunk_ids=[ch.chunk_id], target_peer_id=x,
                         clock=_Shifted(net.clock, FRESHNESS_WINDOW_MS + 1))
    with pytest.raises(PermissionDenied, match="stale delete"):
        net.transport.delete_chunks(_addr(net, x), future)
    assert net.chunk_store(x).has(ch.chunk_id)
    fresh = sign_delete(a.identity, chunk_ids=[ch.chunk_id], target_peer_id=x, clock=net.clock)
    assert net.transport.delete_chunks(_addr(net, x), fresh).removed == (ch.chunk_id,)
    other = rec.chunks[1]
    holder = other.replicas[0]
    signed = sign_delete(a.identity, chunk_ids=[other.chunk_id, ch.chunk_id],
                         target_peer_id=holder, clock=net.clock)
    net.transport.delete_chunks(_addr(net, holder), signed)
    with pytest.raises(PermissionDenied, match="replayed delete"):
        net.transport.delete_chunks(_addr(net, holder), signed)
    with pytest.raises(BadRequest, match="nonce must be 16 bytes"):
        net.transport.delete_chunks(_addr(net, holder), SignedDelete(b"", bytes(64)))
    too_many = pb.DeleteRequest(chunk_ids=[bytes(32)] * (MAX_DELETE_CHUNK_IDS + 1),
                                target_peer_id=holder, timestamp_ms=net.clock.now_ms(),
                                nonce=bytes(16)).SerializeToString()
    with pytest.raises(BadRequest, match="1..1024 chunk ids"):
        net.transport.delete_chunks(_addr(net, holder), SignedDelete(too_many, bytes(64)))


class _Shifted:
    def __init__(self, clock, delta_ms: int) -> None:
        self.clock, self.delta_ms = clock, delta_ms

    def now_ms(self) -> int:
        return self.clock.now_ms() + self.delta_ms

    def monotonic_s(self) -> float:
        return self.clock.monotonic_s()


def test_rm_crash_between_tombstone_and_document_is_finished_by_gc(tmp_path: Path) -> None:
    """A tombstone next to a still-present file document (crash mid-rm) completes the rm."""
    net, c, a = _setup(tmp_path)
    rec = c.put(a, random_file(tmp_path / "f.bin", 50_000), "/f.bin")
    tomb = Tombstone.for_record(rec, net.clock.now_ms())
    # step 1 done, crash before step 2
    c.store.put(tomb.doc_id, sign_document(tomb.doc_id, tomb.to_doc(), a.identity))
    report = c.collect_garbage(a)
    assert report.files_finished == 1 and report.tombstones_done == 1
    assert c.list_files(a) == []
    assert all(net.holders(cid) == set() for cid in _all_chunk_ids(rec))
