"""Reused chunk buffers for the transfer engine (flat memory without per-chunk allocations)."""

from __future__ import annotations

import threading

# Capacities are rounded up, so a buffer that held a chunk's ciphertext can take the next
# chunk's plaintext (16 bytes shorter) and the other way round.
_ROUND_BYTES = 64 * 1024


class ChunkBuffers:
    """Chunk-sized buffers a transfer reuses. A fresh 4 MiB object per chunk (read, joined,
    encrypted or decrypted) costs page faults on first touch and an unmap when freed, for
    every chunk (profiled: docs/benchmarks.md); these are allocated once. Never blocks: the
    chunks in flight bound how many are out, so the free list stays that short too."""

    def __init__(self) -> None:
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self, size: int) -> memoryview:
        with self._lock:
            for i, buf in enumerate(self._free):
                if len(buf) >= size:
                    del self._free[i]
                    return memoryview(buf)[:size]
        return memoryview(bytearray(-(-size // _ROUND_BYTES) * _ROUND_BYTES or 1))[:size]

    def give(self, view: memoryview) -> None:
        """Back to the free list; the caller keeps no view of it."""
        buf = view.obj
        assert isinstance(buf, bytearray)
        with self._lock:
            self._free.append(buf)
