"""SFTP face, pure parts: path resolution, the implied-directory tree, the login limiter,
the streamed chunk window and the upload spool."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from mydrive.client import FileEntry
from mydrive.engine.buffers import ChunkBuffers
from mydrive.errors import BadRequest, PathTraversal, TooLarge
from mydrive.formats.chunkplan import ChunkPlan
from mydrive.sftp.hostkey import load_or_create_host_key
from mydrive.sftp.ratelimit import LoginLimiter
from mydrive.sftp.reader import ChunkWindow
from mydrive.sftp.spool import SPOOL_SUFFIX, Spool, sweep
from mydrive.sftp.tree import STAGING_DIR, DriveTree, resolve
from mydrive.testing.clock import ManualClock


# ---- paths ----------------------------------------------------------------------------
@pytest.mark.parametrize(("raw", "want"), [
    (b".", "/"), (b"", "/"), (b"/", "/"), (b"a/b", "/a/b"), (b"/a/./b/", "/a/b"),
    (b"/a/b/../c", "/a/c"), (b"//a//b", "/a/b"), ("/ü".encode(), "/ü"),
])
def test_sftp_resolve_gives_canonical_paths(raw: bytes, want: str) -> None:
    """Relative paths start at the root; '.', '..' inside the tree and doubled '/' resolve."""
    assert resolve(raw) == want


@pytest.mark.parametrize("raw", [b"..", b"/..", b"/a/../..", b"../etc/passwd",
                                 b"/a/../../b", b"a\\..\\b"])
def test_sftp_resolve_refuses_traversal(raw: bytes) -> None:
    """A path climbing above the user's root (or using backslashes) is PathTraversal."""
    with pytest.raises(PathTraversal):
        resolve(raw)


@pytest.mark.parametrize("raw", [b"\xff\xfe", b"/a\x00b", b"/a/b\x01", b"/con", b"/x" * 5000])
def test_sftp_resolve_refuses_bad_names(raw: bytes) -> None:
    """Non-UTF-8, NUL, control characters, non-portable and over-long names are refused."""
    with pytest.raises(BadRequest):
        resolve(raw)


# ---- tree -----------------------------------------------------------------------------
def _file(path: str, i: int, created_ms: int = 1000) -> FileEntry:
    return FileEntry(path=path, size_bytes=10 * i, created_ms=created_ms, chunk_count=1,
                     file_id=f"{i:032x}")


def test_sftp_tree_implies_directories_and_hides_staging() -> None:
    """Every ancestor of a file is a directory; staging uploads are invisible."""
    tree = DriveTree([_file("/a/b/c.txt", 1), _file("/top", 2), _file(f"{STAGING_DIR}/x", 3)],
                     session_dirs={"/empty/sub"})
    assert [n.path for n in tree.children("/")] == ["/a", "/empty", "/top"]
    assert tree.lookup("/a/b").is_dir and not tree.lookup("/a/b/c.txt").is_dir
    assert tree.lookup("/empty/sub").is_dir and tree.children("/empty/sub") == []
    assert tree.lookup(STAGING_DIR) is None and tree.lookup(f"{STAGING_DIR}/x") is None
    assert tree.files_under("/a") == ["/a/b/c.txt"]


def test_sftp_tree_shows_newest_of_two_files_and_names_both() -> None:
    """Two files under one name (crash mid-overwrite): the newest is shown, both are named."""
    tree = DriveTree([_file("/f", 1, created_ms=1000), _file("/f", 2, created_ms=5000)])
    assert tree.lookup("/f").file_id == f"{2:032x}" and tree.lookup("/f").size_bytes == 20
    assert set(tree.file_ids_at("/f")) == {f"{1:032x}", f"{2:032x}"}


# ---- login limiter --------------------------------------------------------------------
def test_sftp_limiter_blocks_user_after_failures_until_window_passes() -> None:
    """5 failures lock a user name from every source for the window, then it opens again."""
    clock = ManualClock()
    limiter = LoginLimiter(clock, window_s=60, max_failures_per_user=5,
                           max_attempts_per_source=1000)
    for i in range(5):
        assert limiter.begin("alice", f"10.0.0.{i}")
        limiter.failed("alice")
    assert not limiter.begin("alice", "10.9.9.9")
    assert limiter.begin("bob", "10.9.9.9")  # other users are not affected
    clock.advance_ms(60_001)
    assert limiter.begin("alice", "10.9.9.9")


def test_sftp_limiter_blocks_source_after_attempts() -> None:
    """One address gets max_attempts_per_source attempts per window, whatever the names."""
    clock = ManualClock()
    limiter = LoginLimiter(clock, window_s=60, max_failures_per_user=1000,
                           max_attempts_per_source=3)
    assert all(limiter.begin(f"user{i}", "10.0.0.1") for i in range(3))
    assert not limiter.begin("user9", "10.0.0.1")
    assert limiter.begin("user9", "10.0.0.2")


def test_sftp_limiter_memory_is_bounded() -> None:
    """Tracking 10x max_tracked names and sources keeps at most max_tracked of each."""
    limiter = LoginLimiter(ManualClock(), max_tracked=50)
    for i in range(500):
        limiter.begin(f"u{i}", f"s{i}")
        limiter.failed(f"u{i}")
    assert limiter.tracked() <= 100


# ---- chunk window ---------------------------------------------------------------------
def _plan(size: int, chunk: int) -> ChunkPlan:
    count = max(1, -(-size // chunk))
    return ChunkPlan(size_bytes=size, chunk_size_bytes=chunk, chunk_count=count,
                     segment_size_bytes=4096)


def _fetch_from(data: bytes, plan: ChunkPlan) -> Callable[[int, ChunkBuffers], memoryview]:
    """A fetch that fills a buffer of the window's from ``data`` (a view: no allocation)."""
    source = memoryview(data)

    def fetch(i: int, buffers: ChunkBuffers) -> memoryview:
        start, end = plan.chunk_range(i)
        into = buffers.take(end - start)
        into[:] = source[start:end]
        return into

    return fetch


async def _read_all(window: ChunkWindow, step: int, each: Callable[[], None] = lambda: None,
                    ) -> bytes:
    out = bytearray()
    while block := await window.read(len(out), step):
        out += block
        each()
    return bytes(out)


def test_sftp_window_streams_whole_file_with_bounded_memory() -> None:
    """Sequential reads return the file, fetch each chunk once, hold at most `window` chunks."""
    data = os.urandom(40 * 8192 + 123)
    plan = _plan(len(data), 8192)
    held_max = 0

    def held() -> None:
        nonlocal held_max
        held_max = max(held_max, len(window._chunks))

    with ThreadPoolExecutor(4) as pool:
        window = ChunkWindow(plan, _fetch_from(data, plan), pool, window=3)
        assert asyncio.run(_read_all(window, 3000, held)) == data
    assert window.fetches == plan.chunk_count
    assert held_max <= 3


def test_sftp_window_reuses_chunk_buffers() -> None:
    """Forty chunks are decrypted into a handful of buffers (the window's, and one while a
    dropped chunk is given back), not one fresh chunk-sized buffer per chunk: with 8 MiB
    chunks the per-chunk buffers were mapped, faulted in and unmapped every chunk."""
    data = os.urandom(40 * 8192 + 123)
    plan = _plan(len(data), 8192)
    buffers: list[object] = []  # held, so a new buffer can't take a freed one's id
    fetch = _fetch_from(data, plan)

    def counting(i: int, free: ChunkBuffers) -> memoryview:
        into = fetch(i, free)
        if not any(b is into.obj for b in buffers):
            buffers.append(into.obj)
        return into

    with ThreadPoolExecutor(4) as pool:
        window = ChunkWindow(plan, counting, pool, window=3)
        assert asyncio.run(_read_all(window, 3000)) == data
    assert window.fetches == 41
    assert len(buffers) <= 3 + 1


def test_sftp_window_read_copies_only_what_it_returns() -> None:
    """Streaming a file of 1 MiB chunks in 64 KiB reads allocates no chunk-sized object
    once the window's buffers exist: no chunk is sliced whole, joined or copied per read
    (tracemalloc peak above what was held before, well under one chunk)."""
    chunk = 1024 * 1024
    data = os.urandom(12 * chunk)
    plan = _plan(len(data), chunk)
    with ThreadPoolExecutor(2) as pool:
        window = ChunkWindow(plan, _fetch_from(data, plan), pool, window=2)

        async def go() -> tuple[int, bytes]:
            head = await window.read(0, 64 * 1024)  # the window's two buffers, made once
            await window.read(chunk + 65536, 65536)  # and the third, while one is handed back
            tracemalloc.start()
            try:
                base = tracemalloc.get_traced_memory()[0]
                tail = bytearray()
                position = 2 * chunk
                while block := await window.read(position, 64 * 1024):
                    tail += memoryview(block)[:1]  # keep nothing chunk-sized ourselves
                    position += len(block)
                return tracemalloc.get_traced_memory()[1] - base, head
            finally:
                tracemalloc.stop()

        peak, head = asyncio.run(go())
    assert head == data[:64 * 1024]
    assert peak < chunk // 4, f"reads allocated {peak} bytes at their peak"


def test_sftp_window_does_not_hand_a_running_fetch_s_buffer_to_another() -> None:
    """A chunk dropped while its fetch still runs keeps its buffer until that fetch ends: no
    two fetches ever fill the same buffer, and every read returns the file's bytes."""
    data = os.urandom(30 * 8192)
    plan = _plan(len(data), 8192)
    release = threading.Event()
    lock = threading.Lock()
    filling: set[int] = set()
    shared: list[int] = []

    def slow_first(i: int, free: ChunkBuffers) -> memoryview:
        start, end = plan.chunk_range(i)
        into = free.take(end - start)  # held while it waits, as during a decryption
        with lock:
            if id(into.obj) in filling:
                shared.append(i)
            filling.add(id(into.obj))
        try:
            if i < 2:
                release.wait(10)
            into[:] = data[start:end]
            return into
        finally:
            with lock:
                filling.discard(id(into.obj))

    with ThreadPoolExecutor(4) as pool:
        window = ChunkWindow(plan, slow_first, pool, window=2)

        async def go() -> None:
            first = asyncio.ensure_future(window.read(0, 100))  # waits for chunk 0
            await asyncio.sleep(0.05)
            assert await window.read(10 * 8192, 8192 + 50) == data[10 * 8192:11 * 8192 + 50]
            assert await window.read(20 * 8192, 100) == data[20 * 8192:20 * 8192 + 100]
            release.set()
            time.sleep(0.2)  # (the loop held) chunks 0 and 1 end: their buffers go back, and
            window._schedule(25)  # the next fetches refill them before `first` resumes
            time.sleep(0.2)
            assert await first == data[:100]  # chunk 0 was dropped: fetched again, not read
            assert await _read_all(window, 5000) == data

        asyncio.run(go())
    assert shared == []


def test_sftp_window_read_after_a_cancelled_read_fetches_the_chunk_again() -> None:
    """A read cancelled while it waits (its session ends) is cancelled, not the chunk it
    waited for: a later read of that chunk gets it instead of failing as cancelled."""
    data = os.urandom(4 * 8192)
    plan = _plan(len(data), 8192)
    fetch = _fetch_from(data, plan)
    release = threading.Event()

    def slow_first(i: int, buffers: ChunkBuffers) -> memoryview:
        if i == 0:
            release.wait(10)
        return fetch(i, buffers)

    with ThreadPoolExecutor(1) as pool:  # chunk 1 waits behind chunk 0, not started
        window = ChunkWindow(plan, slow_first, pool, window=2)

        async def go() -> None:
            first = asyncio.ensure_future(window.read(0, 10))  # chunk 0 holds the thread
            await asyncio.sleep(0.05)
            waiting = asyncio.ensure_future(window.read(8192 + 10, 10))  # chunk 1: queued
            await asyncio.sleep(0.05)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            release.set()
            assert await first == data[:10]
            assert await window.read(8192 + 10, 10) == data[8192 + 10:8192 + 20]

        asyncio.run(go())


def test_sftp_window_read_far_back_refetches_and_spans_chunks() -> None:
    """A read across a chunk boundary joins both; a read far behind fetches again."""
    data = bytes(range(256)) * 320
    plan = _plan(len(data), 8192)
    with ThreadPoolExecutor(2) as pool:
        window = ChunkWindow(plan, _fetch_from(data, plan), pool, window=2)

        async def go() -> None:
            assert await window.read(8190, 20) == data[8190:8210]
            assert await window.read(80000, 500) == data[80000:80500]
            before = window.fetches
            assert await window.read(10, 10) == data[10:20]
            assert window.fetches > before
            assert await window.read(8192 - 5, 3 * 8192) == data[8192 - 5:4 * 8192 - 5]
            assert await window.read(len(data), 10) == b""

        asyncio.run(go())


def test_sftp_window_refuses_a_chunk_of_the_wrong_length() -> None:
    """A fetched chunk whose plaintext length differs from the plan is an error, not data."""
    plan = _plan(30000, 8192)

    def short(i: int, buffers: ChunkBuffers) -> memoryview:
        return buffers.take(5)

    with ThreadPoolExecutor(1) as pool:
        window = ChunkWindow(plan, short, pool, window=1)
        with pytest.raises(BadRequest, match="expected 8192"):
            asyncio.run(window.read(0, 100))


def test_sftp_window_read_of_a_failed_chunk_fails() -> None:
    """A chunk whose fetch fails makes the read fail; no bytes of it are returned."""
    plan = _plan(30000, 8192)

    def fail(i: int, buffers: ChunkBuffers) -> memoryview:
        raise BadRequest(f"chunk {i} is bad")

    with ThreadPoolExecutor(1) as pool:
        window = ChunkWindow(plan, fail, pool, window=1)
        with pytest.raises(BadRequest, match="chunk 0 is bad"):
            asyncio.run(window.read(0, 100))


# ---- spool ----------------------------------------------------------------------------
def test_sftp_spool_holds_writes_unnamed_and_vanishes_on_close(tmp_path: Path) -> None:
    """Spooled writes read back via .path; on Linux no file is ever named, none is left."""
    spool = Spool(tmp_path, max_bytes=1 << 20)
    spool.write(0, b"hello ")
    spool.write(6, b"world")
    assert spool.path.read_bytes() == b"hello world" and spool.size_bytes == 11
    if sys.platform.startswith("linux"):
        assert spool.unnamed and list(tmp_path.iterdir()) == []
    spool.close()
    assert list(tmp_path.iterdir()) == []


def test_sftp_spool_refuses_past_its_limit(tmp_path: Path) -> None:
    """A write that would grow an upload past max_bytes is refused (TooLarge)."""
    spool = Spool(tmp_path, max_bytes=10)
    spool.write(0, b"0123456789")
    with pytest.raises(TooLarge):
        spool.write(10, b"x")
    spool.close()


def test_sftp_spool_sweep_removes_named_leftovers(tmp_path: Path) -> None:
    """Named spool files a crash left behind are deleted by sweep; other files stay."""
    (tmp_path / f"abc{SPOOL_SUFFIX}").write_bytes(b"plaintext")
    (tmp_path / "keep.txt").write_bytes(b"x")
    assert sweep(tmp_path) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


# ---- host key ---------------------------------------------------------------------------
@pytest.mark.skipif(os.name != "posix", reason="file modes")
def test_sftp_host_key_is_private_kept_and_refused_when_readable(tmp_path: Path) -> None:
    """The host key is made 0600 once and kept; a key readable by others is refused."""
    first = load_or_create_host_key(tmp_path)
    key_file = tmp_path / "sftp" / "host_key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "sftp").stat().st_mode & 0o777 == 0o700
    again = load_or_create_host_key(tmp_path)
    assert again.export_public_key() == first.export_public_key()
    key_file.chmod(0o644)
    with pytest.raises(BadRequest, match="readable by others"):
        load_or_create_host_key(tmp_path)


# ---- peer.json ----------------------------------------------------------------------------
def test_sftp_old_peer_dir_without_sftp_fields_loads_and_runs_no_sftp(tmp_path: Path) -> None:
    """A peer.json from before SFTP loads (port 0) and runs no SFTP server; a new peer does."""
    import json

    from mydrive.node.cluster import kinds_of
    from mydrive.node.peerdir import CONFIG_NAME, PeerDir, init_peer
    from mydrive.node.sftp_address import sftp_address, sftp_healthy

    peer = init_peer(tmp_path / "p")
    assert peer.config.sftp_port > 0 and peer.config.sftp_host == "127.0.0.1"
    assert "sftp" in kinds_of(peer) and not sftp_healthy(peer.config)
    config_path = tmp_path / "p" / CONFIG_NAME
    doc = json.loads(config_path.read_text())
    del doc["sftp_port"], doc["sftp_host"]
    config_path.write_text(json.dumps(doc))
    old = PeerDir(tmp_path / "p")
    assert old.config.sftp_port == 0 and "sftp" not in kinds_of(old)
    assert sftp_address(old.config) == "sftp://127.0.0.1:0"


def test_sftp_health_probe_wants_this_peers_banner(tmp_path: Path) -> None:
    """Only an SSH banner naming this peer is healthy (not OpenSSH, another peer, silence)."""
    import dataclasses
    import socket

    from mydrive.node.peerdir import init_peer
    from mydrive.node.sftp_address import sftp_healthy

    config = init_peer(tmp_path / "p").config
    for banner, healthy in ((b"SSH-2.0-OpenSSH_9.2p1\r\n", False),
                            (b"SSH-2.0-mydrive_0123456789abcdef\r\n", False),
                            (b"", False),
                            (f"SSH-2.0-mydrive_{config.peer_id}\r\n".encode(), True)):
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen(1)

            def answer(listener: socket.socket = listener, banner: bytes = banner) -> None:
                conn, _ = listener.accept()
                with conn:
                    conn.sendall(banner)

            t = threading.Thread(target=answer)
            t.start()
            probe = dataclasses.replace(config, sftp_port=listener.getsockname()[1])
            assert sftp_healthy(probe, timeout_s=2.0) is healthy, banner
            t.join()
