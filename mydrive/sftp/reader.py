"""Reads of one stored file served chunk by chunk: fetched, verified and decrypted ahead.

An SFTP download is a stream of ``read(offset, length)`` requests, mostly in order. The file's
chunks are fetched (with replica failover and segment checks, by the engine) into a window
of at most ``window`` decrypted chunks ahead of the reader; chunks behind the reader are
dropped. So memory stays flat, about ``(window + 1) * chunk size`` per open file, whatever
the file size, and nothing is written to the peer's disk. A read far back or ahead just
fetches that chunk again.

The plaintext buffers are reused: a chunk is decrypted (once its ciphertext is in) into the
buffer of one dropped before, so no chunk-sized object is allocated, faulted in and unmapped
per chunk for the plaintext, and a read copies only the bytes it returns, once. A buffer goes
back to the free list only once its chunk has left the window *and* its fetch has finished;
a read that waited for a chunk the window dropped meanwhile fetches it again rather than read
a buffer that may be refilled.

Only verified plaintext is ever returned: a chunk that fails verification everywhere makes
that read fail (the client sees an SFTP failure, never wrong bytes). Nothing is kept: a crash
leaves nothing behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor, Future
from contextlib import suppress

from mydrive.engine.buffers import ChunkBuffers
from mydrive.errors import BadRequest
from mydrive.formats.chunkplan import ChunkPlan

MAX_READ_BYTES = 4 * 1024 * 1024  # one SFTP read, as asyncssh's limits@openssh.com announces

# ``fetch(index, buffers)``: chunk ``index``'s verified plaintext, in a buffer it took from
# ``buffers`` (a view of exactly its length), or raises having given back what it took;
# called on the pool's threads.
Fetch = Callable[[int, ChunkBuffers], memoryview]


class ChunkWindow:
    def __init__(self, plan: ChunkPlan, fetch: Fetch, pool: Executor, *, window: int,
                 buffers: ChunkBuffers | None = None) -> None:
        assert window >= 1
        self.plan = plan
        self.fetch = fetch
        self.pool = pool
        self.window = window
        self.buffers = buffers if buffers is not None else ChunkBuffers()
        self._chunks: dict[int, Future[memoryview]] = {}
        self.fetches = 0  # chunks fetched so far (a test reads it to see refetches)

    def _future(self, index: int) -> Future[memoryview]:
        future = self._chunks.get(index)
        if future is None:
            self.fetches += 1
            future = self.pool.submit(self._fetch_checked, index)
            self._chunks[index] = future
        return future

    def _fetch_checked(self, index: int) -> memoryview:
        plaintext = self.fetch(index, self.buffers)
        expected = self.plan.plaintext_length(index)
        if len(plaintext) != expected:
            self.buffers.give(plaintext)
            raise BadRequest(f"chunk {index} decrypted to {len(plaintext)} bytes, "
                             f"expected {expected}")
        return plaintext

    def _drop(self, index: int) -> None:
        future = self._chunks.pop(index)
        future.cancel()
        # Its buffer goes back once no thread writes into it: at once if the fetch is done
        # (or never started), else when it ends, on the fetching thread (ChunkBuffers locks).
        future.add_done_callback(self._give_back)

    def _give_back(self, future: Future[memoryview]) -> None:
        if not future.cancelled() and future.exception() is None:
            self.buffers.give(future.result())

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
            if not future.done():
                await _done(future)
            if self._chunks.get(index) is not future:
                continue  # dropped while this read waited: its buffer may be refilled
            plaintext = future.result()
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


async def _done(future: Future[memoryview]) -> None:
    """Until ``future`` is done. Unlike ``asyncio.wrap_future`` a cancelled read does not
    cancel the chunk (another read may want it), and a chunk dropped meanwhile (cancelled)
    just wakes the read."""
    loop = asyncio.get_running_loop()
    waiter: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not waiter.done():
            waiter.set_result(None)

    def on_done(_: Future[memoryview]) -> None:
        with suppress(RuntimeError):  # the loop closed meanwhile: nobody waits
            loop.call_soon_threadsafe(wake)

    future.add_done_callback(on_done)
    await waiter
