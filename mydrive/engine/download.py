"""Download: fetch every chunk from its replicas, verify, decrypt, and publish atomically.

Each segment is checked against the digest in the owner's file record as it arrives; a
dead peer, a bad segment or a misbehaving peer (segments not asked for, twice, of the wrong
size, a stream cut short without an error, an error no honest sender gives) makes the engine
ask the next replica for exactly the missing segments. Memory stays flat: a window of
``max_inflight_chunks`` chunks is in flight and plaintext is written strictly in order.
Plaintext goes to a temporary file that is renamed into place only when the whole file
decrypted and verified, so a failed or interrupted download leaves nothing visible (a crash
may leave a ``*.part`` file in ``.mydrive-partial/``, never the destination).
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import Future
from contextlib import suppress
from pathlib import Path

from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import UserKeys, unwrap_file_key
from mydrive.engine.accounting import TransferLedger
from mydrive.engine.buffers import ChunkBuffers
from mydrive.engine.partial_file import PartialFile
from mydrive.engine.settings import TransferSettings
from mydrive.errors import (
    BadRequest,
    ChunkNotFound,
    DataLoss,
    FileExists,
    MisbehavingPeer,
    MydriveError,
    PeerUnavailable,
    PermissionDenied,
)
from mydrive.formats.digest import (
    digest,
    digests_equal,
    whole_chunk_hash_needed,
)
from mydrive.formats.filerecord import ChunkRecord, FileRecord
from mydrive.runtime.clock import Clock
from mydrive.runtime.disk import fsync_dir
from mydrive.runtime.events import NO_EVENTS, ClockedEvents, EventRecorder
from mydrive.runtime.executor import ExecutorFactory, thread_pool
from mydrive.runtime.private_files import create_private
from mydrive.runtime.randomness import SYSTEM_RANDOMNESS, Randomness
from mydrive.transport.base import PeerAddress, Transport
from mydrive.transport.signed_fetch import FetchSigner, sign_fetch

PARTIAL_DIR_NAME = ".mydrive-partial"
MAX_PROBLEMS = 32  # failure descriptions kept per chunk for the final error message
Progress = Callable[[int], None]
# What an honest sender may answer a valid, owner-signed fetch: it is unreachable, lost the
# chunk, found it damaged, or refuses the signature (its clock is off). Any other error class
# is nonsense for a valid request: the peer misbehaves.
_HONEST_FETCH_ERRORS = (PeerUnavailable, ChunkNotFound, DataLoss, PermissionDenied)


def download_file(record: FileRecord, destination: Path, *, keys: UserKeys | None,
                  peers: Mapping[str, PeerAddress], settings: TransferSettings,
                  transport: Transport, clock: Clock, overwrite: bool = False,
                  randomness: Randomness = SYSTEM_RANDOMNESS,
                  executor: ExecutorFactory = thread_pool, events: EventRecorder = NO_EVENTS,
                  progress: Progress | None = None, file_key: bytes | None = None,
                  signer: FetchSigner | None = None,
                  partial_name: str | None = None) -> TransferLedger:
    """Fetch ``record`` into ``destination`` (a full file path); returns the accounting.

    Everything nondeterministic is handed in: ``clock`` (fetch signatures, the pause before
    asking unreachable replicas again, event stamps), ``randomness`` (fetch nonces, the
    temporary file's name), ``executor`` (chunks fetched in parallel) and ``events``.
    A download job on the owner's peer has no ``keys``: it is handed the unwrapped
    ``file_key`` and a delegate ``signer`` (docs/jobs.md) instead, and names its temporary
    file (``partial_name``) so that it can remove what a crash left behind.
    """
    if destination.exists() and not overwrite:
        raise FileExists(f"{destination} already exists (use --overwrite to replace it)")
    note = ClockedEvents(events, clock)
    if keys is not None:
        file_key = unwrap_file_key(keys, record.file_id, record.wrapped_file_key)
        signer = keys.identity if signer is None else signer
    assert file_key is not None and signer is not None, "keys, or a file key and a signer"
    fetch_signer: FetchSigner = signer
    ledger = TransferLedger()
    partial_dir = destination.parent / PARTIAL_DIR_NAME
    partial_dir.mkdir(parents=True, exist_ok=True)
    tmp = partial_dir / (partial_name or f"{randomness.random_bytes(8).hex()}.part")
    note("download.start", file_id=record.file_id.hex(), chunk_count=record.plan.chunk_count)

    buffers = ChunkBuffers()
    order = _ReplicaOrder()

    def fetch_and_decrypt(chunk: ChunkRecord) -> memoryview:
        check_chunk_id(chunk, record.digest_alg)
        ciphertext = buffers.take(chunk.size_bytes)
        _fetch_chunk_into(ciphertext, chunk, record.digest_alg, signer=fetch_signer,
                          peers=peers, transport=transport, clock=clock,
                          randomness=randomness, ledger=ledger, settings=settings, note=note,
                          order=order)
        # No digest of the whole chunk here: every segment matched the signed record's
        # digest (under a derived id, the id matched the digests too), and AES-GCM's tag
        # covers the whole chunk (a mismatch cannot decrypt).
        plaintext = buffers.take(chunk.size_bytes - crypto.TAG_BYTES)
        crypto.decrypt_chunk_into(file_key, record.file_id, chunk.index,
                                  record.plan.chunk_count, ciphertext, plaintext)
        buffers.give(ciphertext)
        return plaintext

    try:
        with create_private(tmp) as out, executor(max_workers=settings.max_inflight_chunks,
                                              name="download") as pool:
            # A window of chunks in flight, written strictly in order: flat memory.
            window: deque[Future[memoryview]] = deque()
            partial = PartialFile(out)
            for chunk in record.chunks:
                window.append(pool.submit(fetch_and_decrypt, chunk))
                if len(window) >= settings.max_inflight_chunks:
                    _write(partial, window.popleft().result(), progress, buffers)
            while window:
                _write(partial, window.popleft().result(), progress, buffers)
            if partial.size != record.size_bytes:
                raise DataLoss(f"reassembled {partial.size} bytes, expected {record.size_bytes}")
            partial.sync()
        os.replace(tmp, destination)
        fsync_dir(destination.parent)
    finally:
        tmp.unlink(missing_ok=True)
        _remove_if_empty(partial_dir)
    note("download.done", file_id=record.file_id.hex())
    return ledger


def _write(out: PartialFile, plaintext: memoryview, progress: Progress | None,
           buffers: ChunkBuffers) -> None:
    out.write(plaintext)
    buffers.give(plaintext)
    if progress is not None:
        progress(len(plaintext))


class _ReplicaOrder:
    """The order a download asks a chunk's replicas in. A replica found unreachable is asked
    last for every chunk that follows (still asked when no other can serve): a dead peer
    costs one failed fetch per chunk in flight when it died, not one per chunk it holds.
    Otherwise the record's order: placement ranks peers per chunk, so the chunks in flight
    are already pulled from different peers at once."""

    def __init__(self) -> None:
        self._unreachable: set[str] = set()
        self._lock = threading.Lock()

    def order(self, chunk: ChunkRecord) -> list[str]:
        with self._lock:
            return sorted(chunk.replicas, key=lambda p: p in self._unreachable)  # stable

    def unreachable(self, peer_id: str) -> None:
        with self._lock:
            self._unreachable.add(peer_id)

    def reached(self, peer_id: str) -> None:
        with self._lock:
            self._unreachable.discard(peer_id)


def _remove_if_empty(path: Path) -> None:
    # Another download may be using it, or it holds something: then leave it.
    with suppress(OSError):
        path.rmdir()


def check_chunk_id(chunk: ChunkRecord, digest_alg: str) -> None:
    """DataLoss if the record's chunk id is not the one its segment digests give (a scheme
    with derived ids; cheap, no chunk bytes): then no segments can make that chunk."""
    if not chunk.id_consistent(digest_alg):
        raise DataLoss(f"chunk {chunk.index}: the file record's chunk id does not match its "
                       f"segment digests ({digest_alg})")


def _segment_length(chunk: ChunkRecord, index: int) -> int:
    start = index * chunk.segment_size_bytes
    return min(chunk.segment_size_bytes, chunk.size_bytes - start)


class _ChunkFetch:
    """What one chunk's fetch has so far: good segments, and what went wrong where."""

    def __init__(self, chunk: ChunkRecord, into: memoryview, digest_alg: str) -> None:
        assert len(into) == chunk.size_bytes
        self.chunk = chunk
        self.digest_alg = digest_alg  # the record's: how its segment digests were made
        self.count = len(chunk.segment_digests)
        self.into = into  # good segments are copied to their place in the chunk
        self.got: set[int] = set()
        self.problems: list[str] = []
        self.misbehaving: set[str] = set()

    def missing(self) -> list[int]:
        return [i for i in range(self.count) if i not in self.got]

    def problem(self, text: str) -> None:
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)


def fetch_chunk(chunk: ChunkRecord, *, keys: UserKeys, peers: Mapping[str, PeerAddress],
                transport: Transport, clock: Clock, randomness: Randomness,
                ledger: TransferLedger, settings: TransferSettings,
                digest_alg: str, events: EventRecorder = NO_EVENTS) -> bytes:
    """One chunk's ciphertext, fetched with replica failover and checked segment by segment,
    and its id too: for a repair, which stores it again. ``digest_alg`` is the file record's
    chunk id scheme."""
    ciphertext = bytearray(chunk.size_bytes)
    fetch_chunk_into(memoryview(ciphertext), chunk, keys=keys, peers=peers,
                     transport=transport, clock=clock, randomness=randomness, ledger=ledger,
                     settings=settings, digest_alg=digest_alg, events=events)
    return bytes(ciphertext)


def fetch_chunk_into(into: memoryview, chunk: ChunkRecord, *, keys: UserKeys,
                     peers: Mapping[str, PeerAddress], transport: Transport, clock: Clock,
                     randomness: Randomness, ledger: TransferLedger,
                     settings: TransferSettings, digest_alg: str,
                     events: EventRecorder = NO_EVENTS) -> None:
    """``fetch_chunk`` into the caller's buffer of exactly ``chunk.size_bytes``, for a reader
    that streams a file and reuses its buffers (the SFTP face): no chunk-sized object per
    chunk. On an error ``into`` holds unverified bytes and must not be used."""
    if len(into) != chunk.size_bytes:
        raise BadRequest(f"chunk {chunk.index}: a buffer of {len(into)} bytes for a chunk of "
                         f"{chunk.size_bytes}")
    # The id is checked too: this ciphertext may be handed on (a repair stores it) undecrypted.
    check_chunk_id(chunk, digest_alg)  # a derived id: before any byte, from the digests
    _fetch_chunk_into(into, chunk, digest_alg,
                      signer=keys.identity, peers=peers, transport=transport, clock=clock,
                      randomness=randomness, ledger=ledger, settings=settings,
                      note=ClockedEvents(events, clock), order=_ReplicaOrder())
    if whole_chunk_hash_needed(digest_alg) and not digests_equal(
            digest(into, digest_alg), chunk.chunk_id):
        raise DataLoss(f"chunk {chunk.index} does not match its id after reassembly")


def _fetch_chunk_into(into: memoryview, chunk: ChunkRecord, digest_alg: str, *,
                      signer: FetchSigner,
                      peers: Mapping[str, PeerAddress], transport: Transport, clock: Clock,
                      randomness: Randomness, ledger: TransferLedger,
                      settings: TransferSettings, note: ClockedEvents,
                      order: _ReplicaOrder) -> None:
    """Fill ``into`` with the chunk's ciphertext, every segment checked against the record."""
    state = _ChunkFetch(chunk, into, digest_alg)
    to_ask = order.order(chunk)
    for attempt in range(settings.fetch_passes):
        if attempt > 0:
            note("download.pause", chunk=chunk.index,
                 pause_ms=round(settings.fetch_retry_pause_s * 1000))
            clock.sleep(settings.fetch_retry_pause_s)
        to_ask = _fetch_pass(state, to_ask, attempt, signer=signer, peers=peers,
                             transport=transport, clock=clock, randomness=randomness,
                             ledger=ledger, note=note, order=order)
        if not state.missing() or not to_ask:
            break
    missing = state.missing()
    if missing:
        text = (f"chunk {chunk.index}: segments {missing} could not be fetched intact from any "
                f"replica ({'; '.join(state.problems) or 'bad data everywhere'})")
        # A replica that broke the protocol is what the user (or operator) must hear about.
        raise MisbehavingPeer(text) if state.misbehaving else DataLoss(text)


def _fetch_pass(state: _ChunkFetch, replicas: list[str], attempt: int, *, signer: FetchSigner,
                peers: Mapping[str, PeerAddress], transport: Transport, clock: Clock,
                randomness: Randomness, ledger: TransferLedger,
                note: ClockedEvents, order: _ReplicaOrder) -> list[str]:
    """Ask each replica in turn for what is still missing; returns the replicas worth asking
    again after a pause: the unreachable ones, and those that served a bad segment (damage in
    transit heals; a fresh nonce makes a fresh request). A misbehaving peer is not asked again."""
    chunk = state.chunk
    ask_again: list[str] = []
    for peer_id in replicas:
        need = state.missing()
        if not need:
            break
        peer = peers.get(peer_id)
        if peer is None:
            state.problem(f"{peer_id}: unknown peer")
            continue
        asked = [] if len(need) == state.count else need
        signed = sign_fetch(signer, chunk_id=chunk.chunk_id, target_peer_id=peer_id,
                            segment_indices=asked, clock=clock,
                            random_bytes=randomness.random_bytes)
        note("download.fetch", chunk=chunk.index, peer=peer_id, segments=tuple(asked),
             attempt=attempt)
        try:
            bad_segments = _receive(state, peer_id, transport.fetch(peer, signed),
                                    wanted=set(need), ledger=ledger, note=note)
        except MydriveError as raw:
            exc = raw if isinstance(raw, (*_HONEST_FETCH_ERRORS, MisbehavingPeer)) else \
                MisbehavingPeer(f"peer {peer_id} answered a valid fetch with "
                                f"{type(raw).__name__}: {raw}")
            ledger.failed(peer_id)
            note("download.failed", chunk=chunk.index, peer=peer_id, error=type(exc).__name__)
            state.problem(f"{peer_id}: {exc}")
            if isinstance(exc, MisbehavingPeer):
                state.misbehaving.add(peer_id)
            elif isinstance(exc, PeerUnavailable):
                order.unreachable(peer_id)
                ask_again.append(peer_id)
            continue
        order.reached(peer_id)
        if bad_segments:
            ask_again.append(peer_id)
    return ask_again


def _receive(state: _ChunkFetch, peer_id: str,
             stream: Iterator[tuple[int, bytes | memoryview]], *,
             wanted: set[int], ledger: TransferLedger, note: ClockedEvents) -> int:
    """Take the segments a replica streams; keep the good ones, stop at the first lie.
    Returns how many segments failed their digest."""
    chunk = state.chunk
    received: set[int] = set()
    bad_segments = 0
    for index, data in stream:
        if index not in wanted:
            raise MisbehavingPeer(f"peer {peer_id} sent segment {index} of chunk "
                                  f"{chunk.index}, which was not asked for")
        if index in received:
            raise MisbehavingPeer(f"peer {peer_id} sent segment {index} of chunk "
                                  f"{chunk.index} twice")
        received.add(index)
        expected = _segment_length(chunk, index)
        if len(data) != expected:
            raise MisbehavingPeer(f"peer {peer_id} sent segment {index} of chunk "
                                  f"{chunk.index} as {len(data)} bytes; it has {expected}")
        good = digests_equal(digest(data, state.digest_alg), chunk.segment_digests[index])
        ledger.fetched(peer_id, chunk.index, index, len(data), good=good)
        note("download.segment", chunk=chunk.index, segment=index, peer=peer_id, good=good)
        if good:
            start = index * chunk.segment_size_bytes
            state.into[start:start + expected] = data
            state.got.add(index)
        else:
            bad_segments += 1
    if received != wanted:
        raise MisbehavingPeer(f"peer {peer_id} ended the stream of chunk {chunk.index} after "
                              f"{len(received)} of the {len(wanted)} segments asked for")
    return bad_segments
