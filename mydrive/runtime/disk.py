"""Durable, atomic file operations that behave the same on Linux and Windows."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import BinaryIO

# fdatasync skips the timestamps fsync also writes; the data and the size (what a reader
# needs) are made durable by both. Not on Windows or macOS: fsync there.
_sync_data = getattr(os, "fdatasync", os.fsync)


def sync_file(f: BinaryIO) -> None:
    """Flush ``f`` and make its bytes durable."""
    f.flush()
    _sync_data(f.fileno())


# posix_fadvise exists on Linux (not on Windows or macOS): elsewhere nothing is dropped.
_fadvise = getattr(os, "posix_fadvise", None)


def drop_cached(f: BinaryIO) -> None:
    """Let the kernel drop ``f``'s pages from its page cache; call only after a sync.

    A peer writes every stored chunk once and rarely reads it soon after; left cached, each
    new chunk takes fresh pages and the page cache grows with the store. Dropping a
    committed chunk's clean pages lets the next chunk reuse them: the receivers' kernel time
    on a put about halved (docs/benchmarks.md, "Put path: receivers' kernel time").
    Advisory only: a failure changes nothing but speed.
    """
    if _fadvise is None:
        return
    with contextlib.suppress(OSError):
        _fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def fsync_dir(path: Path) -> None:
    # Directories can only be fsynced on POSIX; on Windows os.replace is already durable
    # enough once the file itself was flushed.
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` durably, in place: its name is durable only after a sync
    of its directory, and a crash meanwhile may leave it torn (callers make that harmless)."""
    with open(path, "wb") as f:
        f.write(data)
        sync_file(f)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves the old content or the new, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    write_synced(tmp, data)
    os.replace(tmp, path)
    fsync_dir(path.parent)
