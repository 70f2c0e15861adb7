"""Partial uploads in the chunk store: reserved against capacity, stale ones removed."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mydrive.errors import TooLarge
from mydrive.storage.chunkstore import STALE_SWEEP_INTERVAL_S, ChunkStore
from mydrive.testing.clock import ManualClock
from tests.strategies import random_chunk

SIZE = 8 * 4096


def _partial(store: ChunkStore, segments_sent: int = 2) -> bytes:
    header, segments = random_chunk(SIZE)
    pending = store.begin(header)
    for i in range(segments_sent):
        assert pending.write_segment(i, segments[i])
    pending.close()
    return header.chunk_id


def test_reservation_lives_as_long_as_the_partial(tmp_path: Path) -> None:
    """begin reserves the declared size; it stays while the .part does (across streams and
    restarts), is not counted twice on resume, becomes used bytes on commit, and goes with
    a delete."""
    store = ChunkStore(tmp_path, capacity_bytes=SIZE)  # room for exactly one chunk
    header, segments = random_chunk(SIZE)
    store.begin(header).close()
    assert store.reserved_bytes == SIZE and store.used_bytes == 0
    other, _ = random_chunk(SIZE)
    with pytest.raises(TooLarge, match=f"{SIZE} reserved by partial uploads"):
        store.begin(other)
    pending = store.begin(header)  # the resume fits: its own reservation is replaced
    for i, seg in enumerate(segments):
        pending.write_segment(i, seg)
    pending.commit()
    pending.close()
    assert store.reserved_bytes == 0 and store.used_bytes == SIZE
    restarted = ChunkStore(store.root, capacity_bytes=2 * SIZE)
    cid = _partial(restarted)
    part_bytes = (store.root / "incoming" / f"{cid.hex()}.part").stat().st_size
    assert SIZE < part_bytes < SIZE + 4096  # its resume trailer
    assert ChunkStore(store.root, capacity_bytes=2 * SIZE).reserved_bytes == part_bytes
    restarted.remove(cid)  # its owner deletes the chunk it never finished
    assert restarted.reserved_bytes == 0
    assert not list((store.root / "incoming").glob("*.part"))


def test_stale_partials_go_fresh_and_busy_ones_stay(tmp_path: Path) -> None:
    """Untouched for longer than the TTL (mtime, by the store's clock): removed with its
    reservation, as are stray files as old; a fresh one and one a stream is receiving stay."""
    clock = ManualClock(start_ms=int(time.time() * 1000))
    store = ChunkStore(tmp_path, capacity_bytes=10**9, partial_ttl_s=3600, clock=clock)
    stale, fresh = _partial(store), _partial(store)
    busy_header, _ = random_chunk(SIZE)
    busy = store.begin(busy_header)  # a stream receives it right now
    stray = store.root / "incoming" / ".x.hdr.tmp-123"
    stray.write_bytes(b"left by a crash")
    legacy_hdr = store.root / "incoming" / f"{stale.hex()}.hdr"  # a store of the old layout
    legacy_hdr.write_bytes(b"{}")
    for path in (store.root / "incoming").iterdir():
        if not path.name.startswith(fresh.hex()):
            os.utime(path, (clock.now_ms() / 1000 - 2 * 3600,) * 2)
    assert store.clean_stale_partials() == [stale]
    left = {p.name for p in (store.root / "incoming").iterdir()}
    assert left == {f"{c.hex()}.part" for c in (fresh, busy_header.chunk_id)}
    assert store.reserved_bytes == 2 * SIZE
    busy.close()


def test_begin_sweeps_at_most_once_a_minute(tmp_path: Path) -> None:
    """The first begin sweeps; later ones only once STALE_SWEEP_INTERVAL_S has passed."""
    clock = ManualClock(start_ms=int(time.time() * 1000))
    store = ChunkStore(tmp_path, capacity_bytes=10**9, partial_ttl_s=60, clock=clock)
    cid = _partial(store)  # the first begin swept (nothing to remove)
    part = store.root / "incoming" / f"{cid.hex()}.part"
    os.utime(part, (time.time() - 3600,) * 2)
    clock.advance_ms(int(STALE_SWEEP_INTERVAL_S * 1000) - 1000)
    _partial(store)
    assert part.exists()  # not due yet
    clock.advance_ms(2000)
    _partial(store)
    assert not part.exists()
