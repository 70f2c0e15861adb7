"""Put every system's stored bytes in the same state before its get: on disk, not in memory.

Without this the systems are not compared alike (measured, docs/benchmarks.md, "Stored
bytes: the same state for every system"). A mydrive put syncs every chunk to disk before it
answers and then hands the chunk's pages back to the kernel (``POSIX_FADV_DONTNEED``), so
its get reads from the disk; scp, sftp and Tahoe-LAFS sync nothing, so their file (or
shares) stay dirty in the page cache and their get right after the put reads memory.

So after each put the benchmark syncs the stored files (timed: "put until durable", the
moment every system's put is where mydrive's is when it answers) and drops their pages
(cold get); a second get right after the first reads what the first brought in (hot get).
Linux only, like the rest of the benchmark suite.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path


def sync_files(paths: Iterable[Path]) -> float:
    """fsync every file (its data on disk, as a put that answers "stored" promises); seconds."""
    started = time.perf_counter()
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    return time.perf_counter() - started


def drop_pages(paths: Iterable[Path]) -> None:
    """Hand the files' (clean, synced) pages back to the kernel: the next read is the disk's."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def settle(paths: Iterable[Path]) -> float:
    """Sync the files, then drop their pages: the state a get meets some time after the
    put. The seconds the sync took (what "put until durable" adds to a put)."""
    stored = list(paths)
    seconds = sync_files(stored)
    drop_pages(stored)
    return seconds


def files_under(root: Path, pattern: str, *, what: str) -> list[Path]:
    """The stored files of one system; none found means the harness looks in the wrong place
    (a silent no-op would make every get hot again)."""
    found = sorted(p for p in root.rglob(pattern) if p.is_file())
    if not found:
        raise RuntimeError(f"no stored files of {what} under {root} ({pattern})")
    return found
