"""Durable, atomic file operations that behave the same on Linux and Windows."""

from __future__ import annotations

import os
from pathlib import Path


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


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves the old content or the new, never half."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
