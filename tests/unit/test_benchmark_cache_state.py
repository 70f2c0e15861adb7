"""The benchmark's cold get is cold: after a put, every system's stored bytes are synced and
their pages handed back, so the get reads the disk (benchmarks/cache_state.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from benchmarks import cache_state

pytestmark = pytest.mark.skipif(not hasattr(os, "posix_fadvise") or shutil.which("fincore")
                                is None, reason="posix_fadvise and util-linux fincore: Linux")


def resident_bytes(path: Path) -> int:
    """How much of the file is in the page cache (util-linux fincore, from mincore(2))."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True, check=True).stdout
    return int(out.split()[0])


def written(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))  # dirty in the page cache, as scp leaves its file
    return path


def test_synced_and_dropped_files_leave_the_page_cache(tmp_path: Path) -> None:
    files = [written(tmp_path / f"f{i}", 4 << 20) for i in range(3)]
    assert all(resident_bytes(f) > 0 for f in files)
    assert cache_state.settle(files) >= 0  # what the harness does after each put
    assert [resident_bytes(f) for f in files] == [0, 0, 0]
    # A read brings them back: the second ("hot") get reads memory.
    files[0].read_bytes()
    assert resident_bytes(files[0]) == 4 << 20


def test_dropping_without_the_sync_first_leaves_dirty_pages(tmp_path: Path) -> None:
    """Why the harness syncs before it drops: the kernel keeps dirty pages on DONTNEED (on
    most file systems they are written back first). Pinned here so a harness that skipped
    the sync shows up as a hot "cold" get rather than silently."""
    f = written(tmp_path / "f", 4 << 20)
    cache_state.drop_pages([f])
    if resident_bytes(f) == 0:
        pytest.skip("this file system wrote the dirty pages back on DONTNEED")
    cache_state.sync_files([f])
    cache_state.drop_pages([f])
    assert resident_bytes(f) == 0


def test_no_stored_files_is_an_error_not_a_silent_hot_get(tmp_path: Path) -> None:
    (tmp_path / "peer-0").mkdir()
    with pytest.raises(RuntimeError, match="no stored files of mydrive_tls"):
        cache_state.files_under(tmp_path, "*.chunk", what="mydrive_tls")
    chunk = written(tmp_path / "peer-0" / "ab.chunk", 10)
    assert cache_state.files_under(tmp_path, "*.chunk", what="mydrive_tls") == [chunk]
