"""Download: the plaintext's pages are handed back to the kernel as they are written, and the
whole file is dropped only after its fsync (mydrive/engine/partial_file.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mydrive.engine import partial_file
from mydrive.engine.download import download_file
from mydrive.engine.upload import upload_file
from mydrive.runtime.executor import inline_executor
from mydrive.runtime.faults import NO_FAULTS
from tests.strategies import SMALL_SETTINGS, fast_user, mem_network, random_file, record_of

Event = tuple[str, int, int]


@pytest.fixture
def disk_events(monkeypatch: pytest.MonkeyPatch) -> list[Event]:
    """Every DONTNEED advice, and every fsync of a file, in order."""
    events: list[Event] = []
    real_fsync = os.fsync

    def advise(fd: int, offset: int, length: int, advice: int) -> None:
        assert advice == os.POSIX_FADV_DONTNEED
        events.append(("advise", offset, length))

    def fsync(fd: int) -> None:
        real_fsync(fd)
        if stat.S_ISREG(os.fstat(fd).st_mode):  # not the directory synced after the rename
            events.append(("fsync", 0, 0))

    monkeypatch.setattr(partial_file, "_fadvise", advise)
    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "POSIX_FADV_DONTNEED", 4, raising=False)  # absent on Windows
    return events


def test_download_drops_each_written_range_and_the_whole_file_after_its_fsync(
        tmp_path: Path, disk_events: list[Event]) -> None:
    net = mem_network(tmp_path / "peers", 5)
    keys = fast_user()
    src = random_file(tmp_path / "src.bin", 600_000)  # 10 chunks of 64 KiB
    result = upload_file(src, keys=keys, owner_peer_id="p0", peers=net.peers,
                         settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock,
                         faults=NO_FAULTS)
    out = tmp_path / "out.bin"
    disk_events.clear()  # what the peers' stores did during the upload
    download_file(record_of(result, keys), out, keys=keys, peers=net.addresses,
                  settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock,
                  executor=inline_executor)
    assert out.read_bytes() == src.read_bytes()

    *writing, fsync, last = disk_events
    assert (fsync, last) == (("fsync", 0, 0), ("advise", 0, 0))  # all of it, once clean
    ranges = [(offset, length) for _, offset, length in writing]
    written = sorted(set(ranges))
    ends = [offset + length for offset, length in written]
    assert len(written) == len(result.chunks)
    assert [offset for offset, _ in written] == [0, *ends[:-1]]  # back to back
    # Each chunk's range is advised as it is written (its writeback starts) and again
    # DROP_LAG_WRITES writes later (dropped then), all before the fsync.
    lag = partial_file.DROP_LAG_WRITES
    expected = []
    for i, chunk_range in enumerate(written):
        expected += [chunk_range, *([written[i - lag]] if i >= lag else [])]
    assert ranges == expected
    assert ends[-1] == src.stat().st_size


def test_partial_file_advises_nothing_it_has_not_written(tmp_path: Path,
                                                         disk_events: list[Event]) -> None:
    with open(tmp_path / "part", "wb") as out:
        partial = partial_file.PartialFile(out)
        for size in (5, 7, 11, 13, 17, 19):
            partial.write(memoryview(bytes(size)))
            assert all(offset + length <= partial.size for kind, offset, length in disk_events
                       if kind == "advise")
        partial.sync()
    assert partial.size == (tmp_path / "part").stat().st_size == 72
