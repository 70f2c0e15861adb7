"""The receiver's chunk store and StoreChunk session: verify, resume, commit atomically."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

from mydrive.errors import BadRequest, ChunkNotFound, DataLoss, PermissionDenied, TooLarge
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.formats.digest import WHOLE_CHUNK_ALG, chunk_id_for, digest
from mydrive.runtime import disk
from mydrive.runtime.metrics import Metrics
from mydrive.storage import chunkstore
from mydrive.storage.chunkstore import ChunkStore
from mydrive.storage.receiver import ReceiverSession
from tests.strategies import random_chunk

SEG = 4096


def _chunk(size: int = 5 * SEG + 123) -> tuple[ChunkHeader, list[bytes]]:
    return random_chunk(size, SEG)


def _old_scheme_chunk() -> tuple[ChunkHeader, list[bytes]]:
    """A chunk named the "blake3" way (id = digest of the whole ciphertext): old uploads'
    chunks, which a receiver still verifies by hashing every byte."""
    header, segments = _chunk()
    return dataclasses.replace(header, digest_alg=WHOLE_CHUNK_ALG,
                               chunk_id=digest(b"".join(segments), WHOLE_CHUNK_ALG)), segments


def test_chunkstore_bad_segments_reported_then_commit(tmp_path: Path) -> None:
    """Bad segments are named after the round; resending just them commits the chunk."""
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    header, segments = _chunk()
    session = ReceiverSession(store, Metrics())
    held = session.start(header)
    assert held.indices == frozenset() and not held.committed
    for i, seg in enumerate(segments):
        session.segment(i, bytes([seg[0] ^ 1]) + seg[1:] if i in (1, 4) else seg)
    assert session.end_round() == [1, 4]
    assert not store.has(header.chunk_id)  # nothing visible before it is whole
    session.segment(1, segments[1])
    session.segment(4, segments[4])
    assert session.end_round() == []
    session.close()
    assert store.has(header.chunk_id)
    assert b"".join(store.read_segment(header.chunk_id, i) for i in range(6)) == b"".join(segments)
    assert not list((tmp_path / "incoming").iterdir())


def test_chunkstore_interrupted_upload_resumes(tmp_path: Path) -> None:
    """A stream cut after some segments resumes: the next session says which are held."""
    header, segments = _chunk()
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    first = ReceiverSession(store, Metrics())
    first.start(header)
    for i in (0, 2, 3):
        first.segment(i, segments[i])
    first.close()  # connection lost
    restarted = ChunkStore(tmp_path, capacity_bytes=10**9)  # even across a restart
    second = ReceiverSession(restarted, Metrics())
    assert second.start(header).indices == frozenset({0, 2, 3})
    for i in (1, 4, 5):
        second.segment(i, segments[i])
    assert second.end_round() == []
    second.close()
    assert restarted.has(header.chunk_id)


def test_chunkstore_reupload_of_committed_chunk_is_noop(tmp_path: Path) -> None:
    """Sending a committed chunk again answers 'committed' at once and writes nothing."""
    header, segments = _chunk()
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    s = ReceiverSession(store, Metrics())
    s.start(header)
    for i, seg in enumerate(segments):
        s.segment(i, seg)
    assert s.end_round() == []
    s.close()
    used = store.used_bytes
    again = ReceiverSession(store, Metrics())
    held = again.start(header)
    assert held.committed and held.indices == frozenset(range(len(segments)))
    again.close()
    assert store.used_bytes == used


def test_chunkstore_refuses_bad_headers_and_full_disk(tmp_path: Path) -> None:
    """Wrong digest count, out-of-range index, over capacity: precise errors, nothing written."""
    header, segments = _chunk()
    store = ChunkStore(tmp_path, capacity_bytes=header.chunk_size_bytes - 1)
    with pytest.raises(TooLarge, match="peer is full"):
        store.begin(header)
    store = ChunkStore(tmp_path / "b", capacity_bytes=10**9)
    broken = ChunkHeader(**{**header.__dict__, "segment_digests": header.segment_digests[:-1]})
    with pytest.raises(BadRequest, match="needs 6 segment digests"):
        store.begin(broken)
    session = ReceiverSession(store, Metrics())
    session.start(header)
    with pytest.raises(BadRequest, match="out of range"):
        session.segment(99, b"x")
    session.close()
    with pytest.raises(ChunkNotFound):
        store.header(header.chunk_id)


def test_chunkstore_crash_before_rename_leaves_nothing_visible(tmp_path: Path) -> None:
    """A whole but uncommitted chunk (crash before the rename) is invisible to readers."""
    header, segments = _chunk()
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    s = ReceiverSession(store, Metrics())
    s.start(header)
    for i, seg in enumerate(segments):
        s.segment(i, seg)
    # no end_round: the process dies here
    assert not store.has(header.chunk_id)
    assert list(ChunkStore(tmp_path, capacity_bytes=10**9).chunk_ids()) == []


def _store_whole(store: ChunkStore, header: ChunkHeader, segments: list[bytes]) -> None:
    s = ReceiverSession(store, Metrics())
    s.start(header)
    for i, seg in enumerate(segments):
        s.segment(i, seg)
    assert s.end_round() == []
    s.close()


def _legacy_chunk(root: Path, header: ChunkHeader, segments: list[bytes]) -> Path:
    """What the previous layout committed: a .chunk of the ciphertext alone and a .meta of
    its header as JSON; the .chunk's path."""
    h = header.chunk_id.hex()
    path = root / "chunks" / h[:2] / f"{h}.chunk"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"".join(segments))
    path.with_suffix(".meta").write_text(json.dumps(header.to_json()))
    return path


def test_chunkstore_commits_one_file_its_header_in_a_trailer(tmp_path: Path) -> None:
    """A committed chunk is one file: its ciphertext from offset 0, then the header in a
    trailer. The store's reads (header, segments, ciphertext) and its capacity count see
    the ciphertext alone, before and after a restart."""
    header, segments = _chunk()
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    _store_whole(store, header, segments)
    files = list((tmp_path / "chunks").glob("*/*"))
    assert [p.suffix for p in files] == [".chunk"]
    data = files[0].read_bytes()
    assert data[:header.chunk_size_bytes] == b"".join(segments)
    assert data[header.chunk_size_bytes:] == chunkstore._chunk_trailer(header)
    assert data.endswith(chunkstore.CHUNK_TRAILER_TAG)
    assert store.ciphertext_extent(header.chunk_id) == (files[0], header.chunk_size_bytes)
    assert store.used_bytes == header.chunk_size_bytes
    reopened = ChunkStore(tmp_path, capacity_bytes=10**9)
    assert reopened.used_bytes == header.chunk_size_bytes
    _assert_whole(reopened, header, segments)
    assert list(reopened.read_segments(header.chunk_id, (5, 0))) == [(5, segments[5]),
                                                                       (0, segments[0])]
    assert reopened.remove(header.chunk_id) and reopened.used_bytes == 0
    assert not list((tmp_path / "chunks").glob("*/*"))


def test_chunkstore_commit_syncs_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One data sync (the ciphertext and its trailer together) and one directory sync, and
    no file created but the .part that becomes the .chunk."""
    header, segments = _chunk()
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    (tmp_path / "chunks" / header.chunk_id.hex()[:2]).mkdir()  # made by an earlier chunk
    syncs: list[str] = []
    real_sync, real_dir = chunkstore.sync_file, chunkstore.fsync_dir
    monkeypatch.setattr(chunkstore, "sync_file", lambda f: (syncs.append("data"), real_sync(f)))
    monkeypatch.setattr(chunkstore, "fsync_dir", lambda p: (syncs.append("dir"), real_dir(p)))
    _store_whole(store, header, segments)
    assert syncs == ["data", "dir"]
    assert [p.suffix for p in (tmp_path / "chunks").glob("*/*")] == [".chunk"]


def test_chunkstore_old_layout_commit_cut_before_directory_sync_is_dropped(
        tmp_path: Path) -> None:
    """The previous layout's commit synced the directory once, after the rename: a crash
    before that sync could keep the renamed ``.chunk`` and lose the ``.meta``'s name. Such
    a chunk (no .meta, no trailer) was never acknowledged; the reopened store must not
    serve it (it has no owner key), nor count it, and the owner's next upload of it
    commits it afresh."""
    header, segments = _chunk()
    assert not ChunkStore(tmp_path, capacity_bytes=10**9, inspect_only=True).has(b"x" * 32)
    assert not tmp_path.joinpath("chunks").exists()  # opened to inspect: nothing made
    ChunkStore(tmp_path, capacity_bytes=10**9)
    _legacy_chunk(tmp_path, header, segments).with_suffix(".meta").unlink()
    looked = ChunkStore(tmp_path, capacity_bytes=10**9, inspect_only=True)
    assert list(looked.chunk_ids()) == [header.chunk_id]  # a checker sees what was left
    with pytest.raises(DataLoss):
        looked.header(header.chunk_id)
    reopened = ChunkStore(tmp_path, capacity_bytes=10**9)
    assert not reopened.has(header.chunk_id)
    assert reopened.used_bytes == 0
    with pytest.raises(ChunkNotFound):
        reopened.header(header.chunk_id)
    _store_whole(reopened, header, segments)
    assert reopened.header(header.chunk_id) == header
    assert reopened.used_bytes == header.chunk_size_bytes


def _partial(store: ChunkStore, header: ChunkHeader, segments: list[bytes],
             sent: tuple[int, ...]) -> None:
    session = ReceiverSession(store, Metrics())
    session.start(header)
    for i in sent:
        session.segment(i, segments[i])
    session.close()  # connection lost


def _commit_rest(store: ChunkStore, header: ChunkHeader, segments: list[bytes],
                 held: frozenset[int]) -> None:
    """Resume an upload the store answers with ``held``, send the rest, commit."""
    session = ReceiverSession(store, Metrics())
    assert session.start(header).indices == held
    for i, seg in enumerate(segments):
        if i not in held:
            session.segment(i, seg)
    assert session.end_round() == []
    session.close()
    _assert_whole(store, header, segments)


def _assert_whole(store: ChunkStore, header: ChunkHeader, segments: list[bytes]) -> None:
    """Committed exactly: the .chunk file is the chunk's bytes alone, its header readable."""
    assert store.ciphertext(header.chunk_id) == b"".join(segments)
    assert store.header(header.chunk_id) == header
    assert not list((store.root / "incoming").iterdir())


def test_chunkstore_upload_keeps_one_file_per_chunk_in_incoming(tmp_path: Path) -> None:
    """An upload in progress is one file, its .part, with the resume header after the
    chunk's bytes (no .hdr of its own: a file created and deleted per chunk costs an inode
    allocation each, which ext4 slows with every recent delete); the commit puts the
    committed trailer in its place, so the chunk stays one file."""
    header, segments = _chunk()
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    _partial(store, header, segments, (0, 1))
    part = tmp_path / "incoming" / f"{header.chunk_id.hex()}.part"
    assert [p.name for p in (tmp_path / "incoming").iterdir()] == [part.name]
    assert part.stat().st_size > header.chunk_size_bytes  # the trailer
    assert store.reserved_bytes == header.chunk_size_bytes
    _commit_rest(store, header, segments, frozenset({0, 1}))
    assert sorted(p.suffix for p in (tmp_path / "chunks").glob("*/*")) == [".chunk"]


@pytest.mark.parametrize("damage", ["torn", "another header", "no trailer"])
def test_chunkstore_resume_trailer_not_this_header_starts_afresh(tmp_path: Path,
                                                                 damage: str) -> None:
    """The trailer is written without a sync (it only serves resumes): a torn one, one of
    another header for the same chunk id, or none (a crash after the commit cut it off)
    makes the next stream start from nothing instead of trusting the .part."""
    header, segments = _chunk()
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    other = dataclasses.replace(header, owner_public_key=b"o" * 32)
    _partial(store, other if damage == "another header" else header, segments, (0, 1))
    part = tmp_path / "incoming" / f"{header.chunk_id.hex()}.part"
    if damage == "torn":
        os.truncate(part, part.stat().st_size - 5)
    elif damage == "no trailer":
        os.truncate(part, header.chunk_size_bytes)
    _commit_rest(ChunkStore(tmp_path, capacity_bytes=10**9), header, segments, frozenset())


def _legacy_partial(store: ChunkStore, header: ChunkHeader, segments: list[bytes],
                    sent: tuple[int, ...]) -> None:
    """What the previous layout left: a .part of the chunk's size, its header in a .hdr."""
    incoming, cid = store.root / "incoming", header.chunk_id.hex()
    with open(incoming / f"{cid}.part", "wb") as f:
        f.truncate(header.chunk_size_bytes)
        for i in sent:
            f.seek(header.segment_range(i)[0])
            f.write(segments[i])
    (incoming / f"{cid}.hdr").write_text(json.dumps(header.to_json()))


def test_chunkstore_resumes_a_partial_of_the_previous_layout(tmp_path: Path) -> None:
    """A store upgraded in place: a .part + .hdr the old code left counts its declared size
    and resumes (its header moves into the trailer); a .hdr of another header starts
    afresh. Either way the .hdr goes."""
    header, segments = _chunk()
    _legacy_partial(ChunkStore(tmp_path, capacity_bytes=10**9), header, segments, (0, 3))
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    assert store.reserved_bytes == header.chunk_size_bytes
    _partial(store, header, segments, (4,))  # resumed, cut again: now in the new layout
    assert not list((tmp_path / "incoming").glob("*.hdr"))
    _commit_rest(store, header, segments, frozenset({0, 3, 4}))

    header, segments = _chunk()
    other = dataclasses.replace(header, owner_public_key=b"o" * 32)
    _legacy_partial(store, other, segments, (0, 3))
    _commit_rest(store, header, segments, frozenset())


def test_chunkstore_reads_and_deletes_chunks_of_the_previous_layout(tmp_path: Path) -> None:
    """A store upgraded in place: chunks of the previous layout (.chunk of the bytes alone,
    .meta) next to chunks of this one are all counted, listed, read and served, answered
    "committed" to their own header and refused under another key, and deleted with every
    file they have; an old .meta left by a delete a crash cut short never overrides the
    trailer of the same chunk committed again since."""
    old, old_segments = _chunk()
    new, new_segments = _chunk()
    stale, stale_segments = _chunk()
    ChunkStore(tmp_path, capacity_bytes=10**9)
    _legacy_chunk(tmp_path, old, old_segments)
    _legacy_chunk(tmp_path, stale, stale_segments).unlink()  # its .meta stays behind
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    _store_whole(store, new, new_segments)
    squatter = dataclasses.replace(stale, owner_public_key=b"s" * 32)
    _store_whole(store, squatter, stale_segments)  # the stale .meta names another key
    size = old.chunk_size_bytes
    for s in (store, ChunkStore(tmp_path, capacity_bytes=10**9)):
        assert s.used_bytes == 3 * size
        assert set(s.chunk_ids()) == {old.chunk_id, new.chunk_id, stale.chunk_id}
        for header, segments in ((old, old_segments), (new, new_segments)):
            assert s.header(header.chunk_id) == header
            assert s.ciphertext(header.chunk_id) == b"".join(segments)
            assert s.ciphertext_extent(header.chunk_id)[1] == size
            assert list(s.read_segments(header.chunk_id, (1, 0))) == [(1, segments[1]),
                                                                    (0, segments[0])]
            assert ReceiverSession(s, Metrics()).start(header).committed
            with pytest.raises(PermissionDenied):
                s.begin(dataclasses.replace(header, owner_public_key=b"o" * 32))
        assert s.header(stale.chunk_id) == squatter
    for cid in (old.chunk_id, new.chunk_id, stale.chunk_id):
        assert store.remove(cid)
    assert store.used_bytes == 0
    assert not list((tmp_path / "chunks").glob("*/*"))


class _Crash(BaseException):
    """The process dies here (nothing after runs; the files stay as they are)."""


def _crash_at(monkeypatch: pytest.MonkeyPatch, target: object, name: str,
              nth: int = 1) -> None:
    real = getattr(target, name)
    calls = [0]

    def crashing(*args: object, **kwargs: object) -> object:
        calls[0] += 1
        if calls[0] == nth:
            raise _Crash(name)
        return real(*args, **kwargs)

    monkeypatch.setattr(target, name, crashing)


COMMIT_STEPS = {  # the commit's steps in order; a crash "at" one comes just before it
    "trailer write": (chunkstore, "_write_trailer"),
    "data sync": (chunkstore, "sync_file"),
    "rename": (os, "replace"),
    "directory sync": (chunkstore, "fsync_dir"),
    "acknowledge": (ChunkStore, "_committed"),
}


@pytest.mark.parametrize("point", list(COMMIT_STEPS))
def test_chunkstore_crash_at_each_commit_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              point: str) -> None:
    """A crash before each step of the commit (a process kill: what was written stays)
    leaves the chunk invisible or whole with its header; the store opens, and the owner's
    next upload of the chunk commits it exactly or is answered "committed". Invisible,
    its .part resumes whole while its resume trailer is there, and starts afresh once the
    committed trailer has replaced it."""
    header, segments = _chunk()
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    if point == "directory sync":
        (tmp_path / "chunks" / header.chunk_id.hex()[:2]).mkdir()  # only the commit's sync
    _crash_at(monkeypatch, *COMMIT_STEPS[point])
    with pytest.raises(_Crash):
        _store_whole(store, header, segments)
    monkeypatch.undo()
    reopened = ChunkStore(tmp_path, capacity_bytes=10**9)
    if reopened.has(header.chunk_id):
        assert point in ("directory sync", "acknowledge")
        assert reopened.used_bytes == header.chunk_size_bytes
        _assert_whole(reopened, header, segments)
        held = ReceiverSession(reopened, Metrics()).start(header)
        assert held.committed
    else:
        assert point in ("trailer write", "data sync", "rename")
        assert reopened.used_bytes == 0
        every = frozenset(range(header.segment_count))
        _commit_rest(reopened, header, segments,
                     every if point == "trailer write" else frozenset())


@pytest.mark.parametrize("lost", ["the trailer's tail", "the rename"])
def test_chunkstore_power_loss_in_a_commit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                           lost: str) -> None:
    """A power loss also loses what was not synced: a trailer written but not yet synced
    (torn: the .part's tail cut anywhere), or the rename when the directory's sync never
    came (the .part back in incoming/, whole and synced). Neither leaves a visible chunk;
    the next upload commits it."""
    header, segments = _chunk()
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    (tmp_path / "chunks" / header.chunk_id.hex()[:2]).mkdir()
    _crash_at(monkeypatch, *COMMIT_STEPS["data sync" if "trailer" in lost
                                         else "directory sync"])
    with pytest.raises(_Crash):
        _store_whole(store, header, segments)
    monkeypatch.undo()
    h = header.chunk_id.hex()
    part = tmp_path / "incoming" / f"{h}.part"
    if lost == "the rename":
        os.replace(tmp_path / "chunks" / h[:2] / f"{h}.chunk", part)
    else:
        os.truncate(part, part.stat().st_size - 40)
    reopened = ChunkStore(tmp_path, capacity_bytes=10**9)
    assert not reopened.has(header.chunk_id) and reopened.used_bytes == 0
    _commit_rest(reopened, header, segments, frozenset())


def _corrupt(path: Path, size: int, how: str) -> None:
    """Damage a committed chunk file whose ciphertext is ``size`` bytes, after it."""
    data = bytearray(path.read_bytes())
    footer = len(data) - chunkstore._FOOTER_BYTES
    if how.startswith("flipped byte"):
        offset = {"flipped byte in the header": size + 7,
                  "flipped byte in the length": footer,
                  "flipped byte in the checksum": footer + 8,
                  "flipped byte in the tag": len(data) - 3}[how]
        data[offset] ^= 0x20
    elif how == "length beyond the file":
        data[footer:footer + 8] = (len(data) * 2).to_bytes(8, "little")
    elif how == "length near the file's start":
        data[footer:footer + 8] = footer.to_bytes(8, "little")  # the doc from offset 0
    elif how == "a byte cut off the end":
        data = data[:-1]
    elif how == "cut into the ciphertext":
        data = data[:size // 2]
    elif how == "a byte more before the trailer":
        data[size:size] = b"\0"
    path.write_bytes(bytes(data))


KEEPS_TAG = ["flipped byte in the header", "flipped byte in the length",
             "flipped byte in the checksum", "length beyond the file",
             "length near the file's start", "a byte more before the trailer"]
LOSES_TAG = ["flipped byte in the tag", "a byte cut off the end", "cut into the ciphertext"]


@pytest.mark.parametrize("how", KEEPS_TAG + LOSES_TAG)
def test_chunkstore_corrupt_trailer_is_a_corrupt_chunk(tmp_path: Path, how: str) -> None:
    """A trailer that does not parse, whose checksum fails, whose length points outside the
    file, or whose header is not this chunk's size is a corrupt chunk: every read (the
    header a sender authorizes a fetch with, segments, ciphertext, a new upload of it) is
    DataLoss, as an unreadable .meta was, never a crash or another header served; the
    store's remove still removes it. Reopened, a chunk whose tag is intact stays listed and
    corrupt; one whose end was cut off (no tag, no .meta) is a commit cut short and goes."""
    header, segments = _chunk()
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    _store_whole(store, header, segments)
    path, size = store.ciphertext_extent(header.chunk_id)
    _corrupt(path, size, how)
    cid = header.chunk_id
    for reopen in (False, True):
        s = ChunkStore(tmp_path, capacity_bytes=10**9) if reopen else store
        if not s.has(cid):
            assert s is not store and how in LOSES_TAG
            assert s.used_bytes == 0 and list(s.chunk_ids()) == []
            _store_whole(s, header, segments)  # its owner's next upload commits it again
            _assert_whole(s, header, segments)
            continue
        assert list(s.chunk_ids()) == [cid]
        for read in (lambda: s.header(cid), lambda: s.ciphertext(cid),
                     lambda: s.ciphertext_extent(cid), lambda: list(s.read_segments(cid, (0,))),
                     lambda: s.begin(header)):
            with pytest.raises(DataLoss, match="unreadable header"):
                read()
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    if store.has(cid):
        assert store.remove(cid) and store.used_bytes == 0
    assert not list((tmp_path / "chunks").glob("*/*"))


_CRASHING_RECEIVER = """
import os, sys
from pathlib import Path
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.formats.digest import DIGEST_ALG, chunk_id_for, digest
from mydrive.runtime.metrics import Metrics
from mydrive.storage import chunkstore
from mydrive.storage.chunkstore import ChunkStore
from mydrive.storage.receiver import ReceiverSession
from tests.strategies import random_chunk

store = ChunkStore(Path(sys.argv[1]), capacity_bytes=10**12)
while True:
    data = os.urandom(64 * 1024)
    segs = [data[i:i + 4096] for i in range(0, len(data), 4096)]
    digests = tuple(map(digest, segs))
    header = ChunkHeader(chunk_id=chunk_id_for(DIGEST_ALG, data, 4096, digests),
                         digest_alg=DIGEST_ALG, owner_public_key=b"k" * 32,
                         chunk_size_bytes=len(data), segment_size_bytes=4096,
                         segment_digests=digests)
    s = ReceiverSession(store, Metrics())
    s.start(header)
    for i, seg in enumerate(segs):
        s.segment(i, seg)
    assert s.end_round() == []
    print(header.chunk_id.hex(), flush=True)  # acknowledged
    s.close()
"""


def test_chunkstore_killed_mid_commit_leaves_only_whole_chunks(tmp_path: Path) -> None:
    """A receiver killed (SIGKILL) at an arbitrary point of a stream of commits: every
    acknowledged chunk is there with its header, and every chunk the reopened store shows
    is whole (its bytes give its id, under its header's scheme) with a readable header."""
    import subprocess
    import sys
    import time

    proc = subprocess.Popen([sys.executable, "-c", _CRASHING_RECEIVER, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        proc.stdout.readline()  # imports done, one chunk committed
        time.sleep(0.3)
    finally:
        proc.kill()
        out, _ = proc.communicate()
    acked = {bytes.fromhex(line) for line in out.split()}
    store = ChunkStore(tmp_path, capacity_bytes=10**12)
    held = set(store.chunk_ids())
    assert acked <= held and len(held) >= 1
    for cid in held:
        header = store.header(cid)
        segments = [store.read_segment(cid, i) for i in range(header.segment_count)]
        digests = tuple(digest(seg, header.digest_alg) for seg in segments)
        assert digests == header.segment_digests
        assert chunk_id_for(header.digest_alg, b"".join(segments), header.segment_size_bytes,
                            digests) == cid


def test_chunkstore_read_segments_in_asked_order(tmp_path: Path) -> None:
    """The sender's read: any order, repeats allowed, each segment's exact bytes (the last
    one short); an index out of range is refused before anything is read."""
    header, segments = _chunk()
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    _store_whole(store, header, segments)
    asked = (5, 0, 3, 3)
    assert list(store.read_segments(header.chunk_id, asked)) == [(i, segments[i]) for i in asked]
    with pytest.raises(BadRequest, match="out of range"):
        next(store.read_segments(header.chunk_id, (0, 6)))
    with pytest.raises(ChunkNotFound):
        next(store.read_segments(b"\x00" * 32, (0,)))


@pytest.mark.parametrize("reopen_per_segment", [False, True], ids=["posix", "windows-way"])
def test_chunkstore_read_segments_meets_a_delete(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 reopen_per_segment: bool) -> None:
    """The owner deletes a chunk while a sender streams it. On POSIX the open file is read to
    the end; on Windows, where each segment opens the file anew, the next segment is a
    ChunkNotFound (a peer failure the downloader fails over), never a bare OS error."""
    from mydrive.storage import chunkstore

    monkeypatch.setattr(chunkstore, "REOPEN_PER_SEGMENT", reopen_per_segment)
    header, segments = _chunk()
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    _store_whole(store, header, segments)
    reading = store.read_segments(header.chunk_id, (0, 1, 2))
    assert next(reading) == (0, segments[0])
    assert store.remove(header.chunk_id)
    if reopen_per_segment:
        with pytest.raises(ChunkNotFound):
            next(reading)
    else:
        assert list(reading) == [(1, segments[1]), (2, segments[2])]


@pytest.mark.skipif(not hasattr(os, "posix_fadvise"), reason="posix_fadvise: Linux only")
def test_chunkstore_commit_drops_the_synced_chunk_from_the_page_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A committed chunk's pages are handed back (DONTNEED) after its data sync, not before.

    Left cached, every new chunk took fresh pages: receivers' kernel time per GiB stored was
    about twice as high (docs/benchmarks.md, "Put path: receivers' kernel time (measured)").
    """
    calls: list[tuple[str, int]] = []
    real_sync = disk._sync_data

    def sync(fd: int) -> None:
        calls.append(("sync", fd))
        real_sync(fd)

    def fadvise(fd: int, offset: int, length: int, advice: int) -> None:
        calls.append(("fadvise", fd))
        assert (offset, length, advice) == (0, 0, os.POSIX_FADV_DONTNEED)
        raise OSError("advice refused")  # advisory: the commit goes on

    monkeypatch.setattr(disk, "_sync_data", sync)
    monkeypatch.setattr(disk, "_fadvise", fadvise)
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    header, segments = _chunk()
    _store_whole(store, header, segments)
    assert store.has(header.chunk_id)
    part_fd = next(fd for kind, fd in calls if kind == "fadvise")
    assert calls.index(("sync", part_fd)) < calls.index(("fadvise", part_fd))


@pytest.mark.parametrize("order", ["in order", "out of order"])
def test_chunkstore_commit_refuses_a_chunk_id_its_bytes_do_not_have(tmp_path: Path,
                                                                    order: str) -> None:
    """Under "blake3" (old chunks), every segment matches its digest but the chunk id is
    another's: no commit, whether the whole-chunk hash was fed while the segments arrived
    or the file is re-read. (A derived id that its digests don't give is refused by begin.)"""
    header, segments = _old_scheme_chunk()
    header = dataclasses.replace(header, chunk_id=digest(b"another chunk"))
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    session = ReceiverSession(store, Metrics())
    session.start(header)
    indices = range(len(segments)) if order == "in order" else reversed(range(len(segments)))
    for i in indices:
        session.segment(i, segments[i])
    with pytest.raises(DataLoss, match="does not match its id"):
        session.end_round()
    session.close()
    assert not store.has(header.chunk_id)


def _count_hashed_bytes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The sizes of what the store's whole-chunk hashers are fed from now on."""
    hashed: list[int] = []

    class CountingHasher(chunkstore.Hasher):
        def update(self, data: bytes | memoryview) -> None:
            hashed.append(len(data))
            super().update(data)

    monkeypatch.setattr(chunkstore, "Hasher", CountingHasher)
    return hashed


def test_chunkstore_hashes_the_chunk_while_segments_arrive(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under "blake3" (old chunks), segments in order feed the whole-chunk hash as they come,
    so the commit reads nothing back; after a gap (a bad segment resent later) the commit
    hashes the synced file."""
    hashed = _count_hashed_bytes(monkeypatch)
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    header, segments = _old_scheme_chunk()
    session = ReceiverSession(store, Metrics())
    session.start(header)
    for i, seg in enumerate(segments):
        session.segment(i, seg)
    assert sum(hashed) == header.chunk_size_bytes  # before the commit
    assert session.end_round() == []
    assert sum(hashed) == header.chunk_size_bytes  # the commit re-read nothing
    session.close()

    hashed.clear()
    header, segments = _old_scheme_chunk()
    session = ReceiverSession(store, Metrics())
    session.start(header)
    for i, seg in enumerate(segments):
        session.segment(i, bytes([seg[0] ^ 1]) + seg[1:] if i == 2 else seg)
    assert session.end_round() == [2]
    session.segment(2, segments[2])
    assert session.end_round() == []
    assert sum(hashed) == 2 * SEG + header.chunk_size_bytes  # 0 and 1, then the file
    session.close()
    assert store.has(header.chunk_id)


@pytest.mark.parametrize("order", ["in order", "with a gap"])
def test_chunkstore_commits_a_derived_chunk_without_hashing_it_whole(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, order: str) -> None:
    """Under "blake3-derived" (new uploads) begin checked the id against the digests and each
    segment is checked against its digest: the commit hashes no byte a second time, whether
    the segments came in order or the file would have to be re-read."""
    hashed = _count_hashed_bytes(monkeypatch)
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    header, segments = _chunk()
    assert not header.whole_chunk_hash_needed
    session = ReceiverSession(store, Metrics())
    session.start(header)
    bad = 2 if order == "with a gap" else -1
    for i, seg in enumerate(segments):
        session.segment(i, bytes([seg[0] ^ 1]) + seg[1:] if i == bad else seg)
    if order == "with a gap":
        assert session.end_round() == [2]
        session.segment(2, segments[2])
    assert session.end_round() == []
    session.close()
    assert hashed == []
    assert store.has(header.chunk_id)
    _assert_whole(ChunkStore(tmp_path, capacity_bytes=10**9), header, segments)
