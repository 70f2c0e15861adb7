"""The receiver's chunk store and StoreChunk session: verify, resume, commit atomically."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mydrive.errors import BadRequest, ChunkNotFound, TooLarge
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.formats.chunkplan import segment_ranges
from mydrive.formats.digest import DIGEST_ALG, digest
from mydrive.runtime.metrics import Metrics
from mydrive.storage.chunkstore import ChunkStore
from mydrive.storage.receiver import ReceiverSession

SEG = 4096


def _chunk(size: int = 5 * SEG + 123) -> tuple[ChunkHeader, list[bytes]]:
    data = os.urandom(size)
    segments = [data[a:b] for a, b in segment_ranges(size, SEG)]
    header = ChunkHeader(chunk_id=digest(data), digest_alg=DIGEST_ALG,
                         owner_public_key=b"k" * 32, chunk_size_bytes=size,
                         segment_size_bytes=SEG,
                         segment_digests=tuple(digest(s) for s in segments))
    return header, segments


def test_chunkstore_bad_segments_reported_then_commit(tmp_path: Path) -> None:
    """Bad segments are named after the round; resending just them commits the chunk."""
    store = ChunkStore(tmp_path, capacity_bytes=10**9)
    header, segments = _chunk()
    session = ReceiverSession(store, Metrics())
    held = session.start(header)
    assert held.indices == frozenset() and not held.committed
    for i, seg in enumerate(segments):
        session.segment(i, b"\x00" + seg[1:] if i in (1, 4) else seg)
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
