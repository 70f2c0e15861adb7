"""Reads of one stored file served chunk by chunk: fetched, verified and decrypted ahead.

An SFTP download is a stream of ``read(offset, length)`` requests, mostly in order. The file's
chunks are fetched (with replica failover and segment checks, by the engine) into a window
of at most ``window`` decrypted chunks ahead of the reader; chunks behind the reader are
dropped. So memory stays flat, about ``(window + 1) * chunk size`` per open file, whatever the
file size, and nothing is written to the peer's disk. A read far back or ahead just fetches
that chunk again.

Only verified plaintext is ever returned: a chunk that fails verification everywhere makes
that read fail (the client sees an SFTP failure, never wrong bytes). Nothing is kept: a crash
leaves nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, Future

from mydrive.errors import BadRequest
from mydrive.formats.chunkplan import ChunkPlan

MAX_READ_BYTES = 4 * 1024 * 1024  # one SFTP read, as asyncssh's limits@openssh.com announces


class ChunkWindow:
    def __init__(self, plan: ChunkPlan, fetch: Callable[[int], bytes], pool: Executor, *,
                 window: int) -> None:
        assert window >= 1
        self.plan = plan
        self.fetch = fetch
        self.pool = pool
        self.window = window
        self._chunks: dict[int, Future[bytes]] = {}
        self.fetches = 0  # chunks fetched so far (a test reads it to see refetches)

    def _future(self, index: int) -> Future[bytes]:
        future = self._chunks.get(index)
        if future is None:
            self.fetches += 1
            future = self.pool.submit(self._fetch_checked, index)
            self._chunks[index] = future
        return future

    def _fetch_checked(self, index: int) -> bytes:
        plaintext = self.fetch(index)
        expected = self.plan.plaintext_length(index)
        if len(plaintext) != expected:
            raise BadRequest(f"chunk {index} decrypted to {len(plaintext)} bytes, "
                             f"expected {expected}")
        return plaintext

    def _schedule(self, index: int) -> None:
        """Keep chunks ``index .. index + window - 1`` in flight; drop the others."""
        last = min(self.plan.chunk_count, index + self.window)
        for stale in [i for i in self._chunks if not index <= i < last]:
            self._chunks.pop(stale).cancel()
        for i in range(index, last):
            self._future(i)

    async def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``; b'' at or past the end of the file."""
        if offset < 0 or size < 0:
            raise BadRequest(f"read of {size} bytes at offset {offset} refused")
        size = min(size, MAX_READ_BYTES, max(0, self.plan.size_bytes - offset))
        out = bytearray()
        while len(out) < size:
            position = offset + len(out)
            index = min(position // self.plan.chunk_size_bytes, self.plan.chunk_count - 1)
            start, end = self.plan.chunk_range(index)
            self._schedule(index)
            plaintext = await asyncio.wrap_future(self._chunks[index])
            take = min(size - len(out), end - position)
            out += plaintext[position - start:position - start + take]
        return bytes(out)

    def close(self) -> None:
        for future in self._chunks.values():
            future.cancel()
        self._chunks.clear()
