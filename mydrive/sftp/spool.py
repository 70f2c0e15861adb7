"""Where an SFTP upload collects until the client closes it: a temporary file on the peer.

An SFTP upload arrives as writes at offsets and its size is known only at close, while the
upload engine needs the whole file (its size fixes the chunk plan). So the bytes are spooled
to ``PEER_DIR/sftp/spool/`` and handed to ``PeerClient.put`` on close.

The spool holds PLAINTEXT, readable only by the peer's user (0600 in a 0700 directory), and
never under a name: on Linux it is an ``O_TMPFILE`` (an unnamed inode that the kernel frees
when the last descriptor closes, so even SIGKILL or a power cut leaves no file to find,
though freed blocks keep their bytes until reused, as with any deleted file). Elsewhere it
is a named ``*.spool`` file deleted on close and swept by ``sweep`` when the server starts,
so a crash leaves it until the next start. docs/sftp.md says why it is not encrypted.
"""

from __future__ import annotations

import os
import secrets
import sys
from contextlib import suppress
from pathlib import Path

from mydrive.errors import BadRequest, TooLarge

SPOOL_DIR_NAME = "spool"
SPOOL_SUFFIX = ".spool"
MAX_WRITE_BYTES = 4 * 1024 * 1024  # one SFTP write; clients send 32-256 KiB
MAX_RANGES = 4096  # written ranges remembered; past that, coverage is not claimed


def spool_dir(sftp_root: Path) -> Path:
    path = sftp_root / SPOOL_DIR_NAME
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.name == "posix":
        os.chmod(path, 0o700)
    return path


def sweep(directory: Path) -> int:
    """Delete the named spool files a crashed server left behind; how many."""
    removed = 0
    for leftover in directory.glob(f"*{SPOOL_SUFFIX}"):
        with suppress(OSError):
            leftover.unlink()
            removed += 1
    return removed


class Spool:
    """One upload's bytes. ``path`` names it for a reader (the upload engine) while open."""

    def __init__(self, directory: Path, *, max_bytes: int) -> None:
        assert max_bytes >= 0
        self.max_bytes = max_bytes
        self.size_bytes = 0
        self.touched = False  # written to or truncated
        self._ranges: list[list[int]] = []  # merged [start, end) of what was written
        self._named: Path | None = None
        self._fd = self._open_unnamed(directory)
        if self._fd < 0:
            self._named = directory / f"{secrets.token_hex(16)}{SPOOL_SUFFIX}"
            flags = os.O_RDWR | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
            self._fd = os.open(self._named, flags, 0o600)

    @staticmethod
    def _open_unnamed(directory: Path) -> int:
        tmpfile = getattr(os, "O_TMPFILE", 0)
        if not tmpfile or not sys.platform.startswith("linux"):
            return -1
        try:
            return os.open(directory, os.O_RDWR | tmpfile, 0o600)
        except OSError:  # a file system without O_TMPFILE support
            return -1

    @property
    def unnamed(self) -> bool:
        return self._named is None

    @property
    def path(self) -> Path:
        """A path that opens this spool's bytes (``/proc/self/fd/N`` for an unnamed one)."""
        if self._fd < 0:
            raise BadRequest("the upload was already closed")
        if self._named is not None:
            return self._named
        return Path(f"/proc/self/fd/{self._fd}")

    def write(self, offset: int, data: bytes) -> None:
        if self._fd < 0:
            raise BadRequest("the upload was already closed")
        if offset < 0 or len(data) > MAX_WRITE_BYTES:
            raise BadRequest(f"write of {len(data)} bytes at offset {offset} refused")
        end = offset + len(data)
        if end > self.max_bytes:
            raise TooLarge(f"uploads through SFTP are limited to {self.max_bytes} bytes")
        view = memoryview(data)
        while view:
            written = os.pwrite(self._fd, view, offset) if hasattr(os, "pwrite") \
                else self._seek_write(view, offset)
            view = view[written:]
            offset += written
        self.size_bytes = max(self.size_bytes, end)
        self.touched = True
        self._remember(end - len(data), end)

    def _remember(self, start: int, end: int) -> None:
        if start == end:
            return
        kept = []
        for low, high in self._ranges:
            if high < start or low > end:
                kept.append([low, high])
            else:
                start, end = min(start, low), max(end, high)
        kept.append([start, end])
        kept.sort()
        self._ranges = kept if len(kept) <= MAX_RANGES else [[-1, -1]]

    def covers(self, size_bytes: int) -> bool:
        """Every byte of ``[0, size_bytes)`` was written (a whole-file upload)."""
        return size_bytes == 0 or any(low <= 0 and high >= size_bytes
                                      for low, high in self._ranges)

    def _seek_write(self, data: memoryview, offset: int) -> int:  # Windows has no pwrite
        os.lseek(self._fd, offset, os.SEEK_SET)
        return os.write(self._fd, data)

    def truncate(self, size_bytes: int) -> None:
        """Cut (or extend with zeros) the upload to ``size_bytes``."""
        if self._fd < 0:
            raise BadRequest("the upload was already closed")
        if not 0 <= size_bytes <= self.max_bytes:
            raise TooLarge(f"uploads through SFTP are limited to {self.max_bytes} bytes")
        os.ftruncate(self._fd, size_bytes)
        self.size_bytes = size_bytes
        self.touched = True

    def close(self) -> None:
        """Forget the bytes: close (an unnamed spool vanishes) and delete a named one."""
        if self._fd >= 0:
            with suppress(OSError):
                os.close(self._fd)
            self._fd = -1
        if self._named is not None:
            with suppress(OSError):
                self._named.unlink()
