"""Reads of one stored file served chunk by chunk: fetched, verified and decrypted ahead.

An SFTP download is a stream of ``read(offset, length)`` requests, mostly in order. The file's
chunks are fetched (with replica failover and segment checks, by the engine) into a window
of at most ``window`` decrypted chunks ahead of the reader; chunks behind the reader are
dropped. So memory stays flat, about ``window`` chunk buffers per open file (one or two more
while a dropped fetch finishes), whatever the file size, and nothing is written to the peer's
disk. A read far back or ahead just fetches that chunk again.

The chunk buffers are reused: a chunk is decrypted into the buffer of one dropped before, so
no chunk-sized object is allocated (and faulted in, and unmapped) per chunk, and a read
copies only the bytes it returns, once. A buffer goes back to the free list only once its
chunk has left the window *and* its fetch has finished; a read that waited for a chunk the
window dropped meanwhile fetches it again rather than read a buffer that may be refilled.

Only verified plaintext is ever returned: a chunk that fails verification everywhere makes
that read fail (the client sees an SFTP failure, never wrong bytes). Nothing is kept: a crash
leaves nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, Future

from mydrive.engine.buffers import ChunkBuffers
from mydrive.errors import BadRequest
from mydrive.formats.chunkplan import ChunkPlan

MAX_READ_BYTES = 4 * 1024 * 1024  # one SFTP read, as asyncssh's limits@openssh.com announces

# ``fetch(index, into)`` fills ``into`` (exactly chunk ``index``'s plaintext length) with
# that chunk's verified plaintext, or raises; called on the pool's threads.
Fetch = Callable[[int, memoryview], None]


class ChunkWindow:
    def __init__(self, plan: ChunkPlan, fetch: Fetch, pool: Executor, *, window: int,
                 buffers: ChunkBuffers | None = None) -> None:
        assert window >= 1
        self.plan = plan
        self.fetch = fetch
        self.pool = pool
        self.window = window
        self.buffers = buffers if buffers is not None else ChunkBuffers()
        self._chunks: dict[int, tuple[Future[memoryview], memoryview]] = {}
        self.fetches = 0  # chunks fetched so far (a test reads it to see refetches)

    def _future(self, index: int) -> Future[memoryview]:
        held = self._chunks.get(index)
        if held is None:
            self.fetches += 1
            into = self.buffers.take(self.plan.plaintext_length(index))
            future = self.pool.submit(self._fetch_into, index, into)
            held = self._chunks[index] = (future, into)
        return held[0]

    def _fetch_into(self, index: int, into: memoryview) -> memoryview:
        self.fetch(index, into)
        return into

    def _drop(self, index: int) -> None:
        future, into = self._chunks.pop(index)
        future.cancel()
        # Back to the free list once no thread writes into it (at once if it never started
        # or is done; else when its fetch ends, on the fetching thread: ChunkBuffers locks).
        future.add_done_callback(lambda _: self.buffers.give(into))

    def _schedule(self, index: int) -> None:
        """Keep chunks ``index .. index + window - 1`` in flight; drop the others."""
        last = min(self.plan.chunk_count, index + self.window)
        for stale in [i for i in self._chunks if not index <= i < last]:
            self._drop(stale)
        for i in range(index, last):
            self._future(i)

    async def read(self, offset: int, size: int) -> bytes:
        """Up to ``size`` bytes at ``offset``; b'' at or past the end of the file."""
        if offset < 0 or size < 0:
            raise BadRequest(f"read of {size} bytes at offset {offset} refused")
        size = min(size, MAX_READ_BYTES, max(0, self.plan.size_bytes - offset))
        out: bytearray | None = None  # only for a read that spans chunks
        done = 0
        while done < size:
            position = offset + done
            index = min(position // self.plan.chunk_size_bytes, self.plan.chunk_count - 1)
            start, end = self.plan.chunk_range(index)
            self._schedule(index)
            future = self._future(index)
            plaintext = future.result() if future.done() else await asyncio.wrap_future(future)
            held = self._chunks.get(index)
            if held is None or held[0] is not future:
                continue  # dropped while this read waited: its buffer may be refilled
            take = min(size - done, end - position)
            piece = plaintext[position - start:position - start + take]
            if take == size:
                return bytes(piece)  # the usual read, within one chunk: its one copy
            if out is None:
                out = bytearray(size)
            out[done:done + take] = piece  # copied before the window moves past the chunk
            done += take
        return bytes(out) if out is not None else b""

    def close(self) -> None:
        for index in list(self._chunks):
            self._drop(index)
