"""The plaintext a download writes, in order, with the pages it wrote handed back to the kernel.

Left in the page cache, every chunk written takes fresh pages, and on a VM that returns free
memory to its host a fresh page costs a fault in the host on first touch: a quarter of a
download's busy time was the write of its plaintext (docs/benchmarks.md, "Client-side
optimisations"). So each chunk's range is advised ``POSIX_FADV_DONTNEED`` right after it is
written, which starts its writeback without waiting for it, and again a few chunks later,
when its pages are clean and are dropped: the next chunks reuse them. Nothing here syncs or
waits; the caller's ``fsync`` before the rename is the only durability point, as before.
Linux only (``posix_fadvise``), advisory: elsewhere, or on any error, only speed changes.
"""

from __future__ import annotations

import os
from collections import deque
from contextlib import suppress
from typing import BinaryIO

_fadvise = getattr(os, "posix_fadvise", None)
# Written ranges a few chunks back are clean by the time they are advised again (their
# writeback started when they were written); sooner, most of their pages are still dirty
# and stay cached.
DROP_LAG_WRITES = 4


class PartialFile:
    """Appends to ``out`` (a file opened for writing, at offset 0) and drops what it wrote."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._written = 0
        self._ranges: deque[tuple[int, int]] = deque()  # (offset, length) advised once

    @property
    def size(self) -> int:
        return self._written

    def write(self, data: memoryview) -> None:
        self._out.write(data)
        offset, self._written = self._written, self._written + len(data)
        self._advise(offset, len(data))  # starts this range's writeback
        self._ranges.append((offset, len(data)))
        if len(self._ranges) > DROP_LAG_WRITES:
            self._advise(*self._ranges.popleft())  # written back by now: dropped

    def sync(self) -> None:
        """Flush and fsync, then drop every page of the file (all clean after the sync)."""
        self._out.flush()
        os.fsync(self._out.fileno())
        self._ranges.clear()
        self._advise(0, 0)

    def _advise(self, offset: int, length: int) -> None:
        if _fadvise is None:
            return
        with suppress(OSError):
            _fadvise(self._out.fileno(), offset, length, os.POSIX_FADV_DONTNEED)
