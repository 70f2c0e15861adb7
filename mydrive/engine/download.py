"""Download: fetch every chunk from its replicas, verify, decrypt, and publish atomically.

Each segment is checked against the digest in the owner's file record as it arrives; a
dead peer or a bad segment makes the engine ask the next replica for exactly the missing
segments. Plaintext goes to a temporary file that is renamed into place only when the whole
file decrypted and verified, so a failed or interrupted download leaves nothing visible.
"""

from __future__ import annotations

import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import UserKeys, unwrap_file_key
from mydrive.engine.accounting import TransferLedger
from mydrive.engine.settings import TransferSettings
from mydrive.errors import (
    BadRequest,
    ChunkNotFound,
    DataLoss,
    FileExists,
    PeerUnavailable,
    PermissionDenied,
    TooLarge,
)
from mydrive.formats.digest import digest, digests_equal
from mydrive.formats.filerecord import ChunkRecord, FileRecord
from mydrive.runtime.clock import Clock
from mydrive.runtime.disk import fsync_dir
from mydrive.transport.base import PeerAddress, Transport
from mydrive.transport.signed_fetch import sign_fetch

PARTIAL_DIR_NAME = ".mydrive-partial"
Progress = Callable[[int], None]
_FETCH_ERRORS = (PeerUnavailable, PermissionDenied, ChunkNotFound, DataLoss, BadRequest,
                 TooLarge)


def download_file(record: FileRecord, destination: Path, *, keys: UserKeys,
                  peers: Mapping[str, PeerAddress], settings: TransferSettings,
                  transport: Transport, clock: Clock, overwrite: bool = False,
                  random_bytes: Callable[[int], bytes] = os.urandom,
                  progress: Progress | None = None,
                  sleep: Callable[[float], None] = time.sleep) -> TransferLedger:
    """Fetch ``record`` into ``destination`` (a full file path); returns the accounting."""
    if destination.exists() and not overwrite:
        raise FileExists(f"{destination} already exists (use --overwrite to replace it)")
    file_key = unwrap_file_key(keys, record.file_id, record.wrapped_file_key)
    ledger = TransferLedger()
    partial_dir = destination.parent / PARTIAL_DIR_NAME
    partial_dir.mkdir(parents=True, exist_ok=True)
    tmp = partial_dir / f"{random_bytes(8).hex()}.part"

    def fetch_and_decrypt(chunk: ChunkRecord) -> bytes:
        ciphertext = _fetch_chunk(chunk, keys=keys, peers=peers, transport=transport,
                                  clock=clock, random_bytes=random_bytes, ledger=ledger,
                                  settings=settings, sleep=sleep)
        return crypto.decrypt_chunk(file_key, record.file_id, chunk.index,
                                    record.plan.chunk_count, ciphertext)

    try:
        with open(tmp, "wb") as out, ThreadPoolExecutor(
            max_workers=settings.max_inflight_chunks, thread_name_prefix="download"
        ) as pool:
            # A window of chunks in flight, written strictly in order: flat memory.
            window: deque[Future[bytes]] = deque()
            chunks = iter(record.chunks)
            for chunk in chunks:
                window.append(pool.submit(fetch_and_decrypt, chunk))
                if len(window) >= settings.max_inflight_chunks:
                    _write(out, window.popleft().result(), progress)
            while window:
                _write(out, window.popleft().result(), progress)
            if out.tell() != record.size_bytes:
                raise DataLoss(f"reassembled {out.tell()} bytes, expected {record.size_bytes}")
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, destination)
        fsync_dir(destination.parent)
    finally:
        tmp.unlink(missing_ok=True)
        _remove_if_empty(partial_dir)
    return ledger


def _write(out: BinaryIO, plaintext: bytes, progress: Progress | None) -> None:
    out.write(plaintext)
    if progress is not None:
        progress(len(plaintext))


def _remove_if_empty(path: Path) -> None:
    # Another download may be using it, or it holds something: then leave it.
    with suppress(OSError):
        path.rmdir()


def _fetch_chunk(chunk: ChunkRecord, *, keys: UserKeys, peers: Mapping[str, PeerAddress],
                 transport: Transport, clock: Clock, random_bytes: Callable[[int], bytes],
                 ledger: TransferLedger, settings: TransferSettings,
                 sleep: Callable[[float], None]) -> bytes:
    count = len(chunk.segment_digests)
    got: dict[int, bytes] = {}
    problems: list[str] = []
    to_ask = list(chunk.replicas)
    for attempt in range(settings.fetch_passes):
        if attempt > 0:
            sleep(settings.fetch_retry_pause_s)
        to_ask = _fetch_pass(chunk, to_ask, got, keys=keys, peers=peers, transport=transport,
                             clock=clock, random_bytes=random_bytes, ledger=ledger,
                             problems=problems)
        if len(got) == count or not to_ask:
            break
    missing = [i for i in range(count) if i not in got]
    if missing:
        raise DataLoss(f"chunk {chunk.index}: segments {missing} could not be fetched intact "
                       f"from any replica ({'; '.join(problems) or 'bad data everywhere'})")
    ciphertext = b"".join(got[i] for i in range(count))
    if not digests_equal(digest(ciphertext), chunk.chunk_id):
        raise DataLoss(f"chunk {chunk.index} does not match its id after reassembly")
    return ciphertext


def _fetch_pass(chunk: ChunkRecord, replicas: list[str], got: dict[int, bytes], *,
                keys: UserKeys, peers: Mapping[str, PeerAddress], transport: Transport,
                clock: Clock, random_bytes: Callable[[int], bytes], ledger: TransferLedger,
                problems: list[str]) -> list[str]:
    """Ask each replica in turn for what is still missing; returns the unreachable ones."""
    count = len(chunk.segment_digests)
    unreachable: list[str] = []
    for peer_id in replicas:
        need = [i for i in range(count) if i not in got]
        if not need:
            break
        peer = peers.get(peer_id)
        if peer is None:
            problems.append(f"{peer_id}: unknown peer")
            continue
        signed = sign_fetch(keys.identity, chunk_id=chunk.chunk_id, target_peer_id=peer_id,
                            segment_indices=[] if len(need) == count else need,
                            clock=clock, random_bytes=random_bytes)
        wanted = set(need)
        try:
            for index, data in transport.fetch(peer, signed):
                if index not in wanted or index in got:
                    continue  # ignore what we did not ask for
                good = digests_equal(digest(data), chunk.segment_digests[index])
                ledger.fetched(peer_id, chunk.index, index, len(data), good=good)
                if good:
                    got[index] = data
        except _FETCH_ERRORS as exc:
            ledger.failed(peer_id)
            if len(problems) < 32:
                problems.append(f"{peer_id}: {exc}")
            if isinstance(exc, PeerUnavailable):
                unreachable.append(peer_id)
    return unreachable
