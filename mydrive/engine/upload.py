"""Upload: encrypt a local file chunk by chunk and store every chunk on R peers.

Memory stays flat: at most ``max_inflight_chunks`` chunks are read and encrypted at once, and
a chunk's ciphertext is dropped as soon as its last replica is stored (no future, callback or
list keeps it). A replica peer that fails (unreachable, full, rejecting, or misbehaving: an
answer no honest receiver gives) is replaced by another eligible peer, still never letting
one peer hold every chunk of the file; replicas not yet sent move to make room when needed
(mydrive.engine.replacement). Only the segments a receiver reports bad are resent.
A peer's StoreChunk streams carry chunk after chunk where it offers that (StoreSessions),
instead of one call per replica.
A crash leaves nothing locally; receivers discard what they did not commit.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import UserKeys, wrap_file_key
from mydrive.engine.accounting import TransferLedger
from mydrive.engine.buffers import ChunkBuffers
from mydrive.engine.replacement import Layout
from mydrive.engine.settings import TransferSettings
from mydrive.errors import (
    BadRequest,
    DataLoss,
    MisbehavingPeer,
    MydriveError,
    PeerUnavailable,
    TooLarge,
)
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.formats.chunkplan import (
    ChunkPlan,
    min_chunks_for_placement,
    plan_chunks,
    segment_ranges,
)
from mydrive.formats.digest import DIGEST_ALG, chunk_id_for, digest
from mydrive.formats.filerecord import ChunkRecord
from mydrive.formats.placement import PeerSlot, place_chunks
from mydrive.runtime.allocator import tune_for_transfers
from mydrive.runtime.clock import Clock
from mydrive.runtime.events import NO_EVENTS, ClockedEvents, EventRecorder
from mydrive.runtime.executor import ExecutorFactory, thread_pool
from mydrive.runtime.faults import NO_FAULTS, FaultHooks
from mydrive.runtime.randomness import SYSTEM_RANDOMNESS, Randomness
from mydrive.transport.base import PeerAddress, StoreSessions, Transport

GCM_TAG_BYTES = 16
FILE_ID_BYTES = 16
PROBE_CHUNK_ID = bytes(32)  # no chunk has this id; any answer at all means "up"

Progress = Callable[[int], None]  # called with the number of plaintext bytes just done


@dataclass(frozen=True)
class PeerInfo:
    address: PeerAddress
    capacity_bytes: int

    @property
    def peer_id(self) -> str:
        return self.address.peer_id


@dataclass(frozen=True)
class UploadResult:
    file_id: bytes
    plan: ChunkPlan
    wrapped_file_key: bytes
    chunks: tuple[ChunkRecord, ...]
    ledger: TransferLedger


@dataclass(frozen=True)
class FileKeys:
    """A file's identity and key drawn by the owner's client, for an upload run elsewhere
    (an upload job on the owner's peer: docs/jobs.md); the engine then needs no UserKeys."""

    file_id: bytes
    file_key: bytes
    wrapped_file_key: bytes
    owner_public_key: bytes

    def __repr__(self) -> str:
        return f"FileKeys(file_id={self.file_id.hex()}, <key withheld>)"


@dataclass
class _EncryptedChunk:
    index: int
    header: ChunkHeader
    ciphertext: memoryview  # a reused buffer (ChunkBuffers), given back after the last replica


class _ChunkJob:
    """One chunk on its way to its R replicas. The last replica to finish drops the
    ciphertext, so a finished chunk costs no memory however long the upload goes on."""

    def __init__(self, chunk: _EncryptedChunk, replicas: int) -> None:
        self.chunk: _EncryptedChunk | None = chunk
        self.replicas_left = replicas


class _Replicas:
    """Who holds (or is being given) each chunk; chooses substitutes for failed peers.

    ``standby`` are the peers that did not answer the probe before placement: nothing is
    planned for them, but they are a failed replica's last resort. A probe that fails once
    (a peer restarting, a connection reset) must not leave the upload one peer short for
    its whole length; each standby peer costs at most one failed attempt, since a failure
    puts it in ``failed`` like any other peer.

    ``assigned`` is the plan, read when a chunk's turn comes (``begin``, in file order): the
    replicas of chunks not begun yet may still move to make room for a failed one
    (mydrive.engine.replacement); those of the first ``begun`` chunks never do (a count, not
    a set of replicas: memory stays flat however many chunks the file has).
    ``on_move(chunk, from_peer, to_peer)`` hears of every replica so moved, the substitute
    itself excepted."""

    def __init__(self, file_id: bytes, placement: list[list[str]], eligible: Sequence[str],
                 standby: Sequence[str] = (),
                 on_move: Callable[[int, str, str], None] | None = None):
        self.file_id = file_id
        self.chunk_count = len(placement)
        self.assigned = [list(p) for p in placement]
        self.failed: set[str] = set()
        self.begun = 0
        self.eligible = list(eligible)
        self.standby = [p for p in standby if p not in self.eligible]
        self._on_move = on_move
        self._answered_again: set[str] = set()
        self._probing = {p: threading.Lock() for p in self.standby}
        self._lock = threading.Lock()

    def begin(self, chunk_index: int) -> list[str]:
        """The peers chunk ``chunk_index`` goes to now; from here on they stay. Chunks begin
        in file order."""
        with self._lock:
            self.begun = max(self.begun, chunk_index + 1)
            return list(self.assigned[chunk_index])

    def usable(self, peer_id: str, answers: Callable[[str], bool]) -> bool:
        """False for a peer failed in this upload. A standby peer is probed again
        (``answers``) the first time it is chosen, by one thread while the others wait: a
        peer still silent fails at once instead of after a store's timeout."""
        probing = self._probing.get(peer_id)
        if probing is None:
            return peer_id not in self.failed
        with probing:
            if peer_id in self.failed:
                return False
            if peer_id not in self._answered_again:
                if not answers(peer_id):
                    with self._lock:
                        self.failed.add(peer_id)
                    return False
                self._answered_again.add(peer_id)
            return True

    @property
    def live(self) -> int:
        """Peers not (yet) failed in this upload, standby ones included."""
        return len(self._live())

    def _live(self) -> list[str]:
        return [p for p in (*self.eligible, *self.standby) if p not in self.failed]

    def substitute(self, chunk_index: int, failed_peer: str) -> str | None:
        """A new peer for the replica of ``chunk_index`` that ``failed_peer`` failed (it is
        begun at once), or None when no rearrangement of the replicas not begun yet frees
        one. Every other replica still planned on a failed peer is given a new home in the
        same go when all of them can be (those begun are left to their own failover, but
        counted), so that a choice made now never corners a later chunk."""
        with self._lock:
            self.failed.add(failed_peer)
            self.assigned[chunk_index].remove(failed_peer)
            # The substitute goes last in the chunk's list, as it always did.
            base: list[list[str | None]] = [list(p) for p in self.assigned]
            base[chunk_index].append(None)
            hole = (chunk_index, len(base[chunk_index]) - 1)
            orphans = [(c, s) for c, peers in enumerate(base) for s, p in enumerate(peers)
                       if p in self.failed]
            layout = self._layout(base, orphans)
            if layout.fill(hole) is not None and all(layout.fill(h) for h in orphans):
                # Begun orphans stay with their failed peer: their own thread fails over.
                for c, s in orphans:
                    if c < self.begun:
                        layout.slots[c][s] = base[c][s]
            else:
                # Some later replica will find no home whatever happens; this one may.
                layout = self._layout(base, [])
                if layout.fill(hole) is None:
                    return None
            chosen = layout.slots[hole[0]][hole[1]]
            assert chosen is not None
            for c, peers in enumerate(layout.slots):
                for s, peer in enumerate(peers):
                    before = base[c][s]
                    if (c, s) != hole and peer != before:
                        assert peer is not None and before is not None
                        if self._on_move is not None:
                            self._on_move(c, before, peer)
            self.assigned = [[p for p in peers if p is not None] for peers in layout.slots]
            return chosen

    def _fixed(self, chunk_index: int, peer_id: str) -> bool:
        return chunk_index < self.begun

    def _layout(self, base: list[list[str | None]], holes: list[tuple[int, int]]) -> Layout:
        """``base`` with ``holes`` opened, for ``Layout.fill``. Preference as the greedy
        choice always had: peers that answered the probe before standby ones, then the least
        loaded (a dead peer's chunks spread out instead of filling one or two peers up to
        the cap), ties broken by a hash of (file, chunk, peer), deterministic like the
        placement itself."""
        slots: list[list[str | None]] = [list(p) for p in base]
        for c, s in holes:
            slots[c][s] = None
        standby = set(self.standby)

        def rank(chunk: int, peer: str, load: int) -> tuple[bool, int, bytes]:
            return (peer in standby, load,
                    digest(self.file_id + chunk.to_bytes(4, "big") + peer.encode()))

        return Layout(slots, live=self._live(), fixed=self._fixed,
                      cap=self.chunk_count - 1, rank=rank)


def upload_file(source: Path, *, keys: UserKeys | None, owner_peer_id: str | None,
                peers: Sequence[PeerInfo], settings: TransferSettings, transport: Transport,
                clock: Clock, faults: FaultHooks = NO_FAULTS,
                randomness: Randomness = SYSTEM_RANDOMNESS,
                executor: ExecutorFactory = thread_pool, events: EventRecorder = NO_EVENTS,
                progress: Progress | None = None,
                file_keys: FileKeys | None = None) -> UploadResult:
    """Encrypt ``source`` under a fresh file key and store each chunk on R peers.

    An upload job passes ``file_keys`` (drawn by the owner's client) and no ``keys``; the
    same ``file_keys`` give the same chunks again, so a resumed job finds them committed.

    Everything nondeterministic is handed in: the clock (it stamps the events; an upload
    never pauses), ``randomness`` (file id, file key, the key's wrap nonce),
    ``executor`` (the threads the R replica streams run on) and ``events`` (told every step).
    A peer that is unreachable, full, keeps rejecting segments or breaks the protocol
    (MisbehavingPeer) is replaced; the upload fails only when no eligible peer can stand in.
    Nothing is written locally: a crash leaves uncommitted segments on receivers, which they
    discard, and committed chunks no file record names (docs/deletion.md).
    """
    tune_for_transfers()  # large buffers stay in the heap (runtime/allocator.py)
    note = ClockedEvents(events, clock)
    size = source.stat().st_size
    eligible, standby = _probe([p for p in peers if p.peer_id != owner_peer_id], transport,
                               settings.probe_timeout_s, executor)
    min_chunks = min_chunks_for_placement(len(eligible), settings.replicas)
    if len(eligible) - 1 >= settings.replicas + 1:
        # Slack for one peer dying mid-upload: cut enough chunks that the survivors can
        # still take its replicas without one of them ending up with every chunk.
        min_chunks = max(min_chunks,
                         min_chunks_for_placement(len(eligible) - 1, settings.replicas))
    # chunk_size_bytes is what a peer stores; the GCM tag takes 16 of it, so a full chunk's
    # ciphertext is exactly chunk_size_bytes and splits into whole segments.
    plan = plan_chunks(size, chunk_size_bytes=settings.chunk_size_bytes - GCM_TAG_BYTES,
                       segment_size_bytes=settings.segment_size_bytes, min_chunks=min_chunks)
    if file_keys is None:
        assert keys is not None, "keys, or the file keys an owner drew"
        file_keys = new_file_keys(keys, randomness)
    file_id, file_key = file_keys.file_id, file_keys.file_key
    wrapped_file_key, owner_public_key = file_keys.wrapped_file_key, file_keys.owner_public_key
    stored_sizes = [plan.plaintext_length(i) + GCM_TAG_BYTES for i in range(plan.chunk_count)]
    slots = [PeerSlot(peer_id=p.peer_id, capacity_bytes=p.capacity_bytes,
                      free_bytes=p.capacity_bytes) for p in eligible]
    placement = place_chunks(file_id, stored_sizes, slots, replicas=settings.replicas,
                             owner_peer_id=owner_peer_id)
    note("upload.start", file_id=file_id.hex(), size_bytes=size, chunk_count=plan.chunk_count,
         eligible=tuple(p.peer_id for p in eligible),
         standby=tuple(p.peer_id for p in standby))
    for index, chunk_peers in enumerate(placement):
        note("upload.placed", chunk=index, replicas=tuple(chunk_peers))
    replicas = _Replicas(file_id, placement, [p.peer_id for p in eligible],
                         standby=[p.peer_id for p in standby],
                         on_move=lambda chunk, before, after: note(
                             "upload.moved", chunk=chunk, peer=before, to=after))
    by_id = {p.peer_id: p.address for p in (*eligible, *standby)}
    ledger = TransferLedger()
    records: dict[int, ChunkRecord] = {}
    # Chunks read and encrypted but not yet stored on all their replicas: memory is bounded
    # by this and nothing else, so no structure may keep a finished chunk alive.
    inflight = threading.BoundedSemaphore(settings.max_inflight_chunks)
    buffers = ChunkBuffers()
    failures: list[BaseException] = []  # the first failure of any replica; at most one
    lock = threading.Lock()

    def store_replica(job: _ChunkJob, peer_id: str, slot: int) -> None:
        """One replica of one chunk, on an executor thread; never raises (no future is
        kept): the first failure is noted for the submitting thread to raise."""
        chunk = job.chunk
        assert chunk is not None
        last = False
        try:
            try:
                store_with_failover(chunk, peer_id, slot)
            finally:
                with lock:
                    job.replicas_left -= 1
                    last = job.replicas_left == 0
                    failed = bool(failures)
            if last and not failed:
                records[chunk.index] = ChunkRecord(
                    index=chunk.index, chunk_id=chunk.header.chunk_id,
                    size_bytes=chunk.header.chunk_size_bytes,
                    segment_size_bytes=chunk.header.segment_size_bytes,
                    segment_digests=chunk.header.segment_digests,
                    replicas=tuple(replicas.assigned[chunk.index]))
                if progress is not None:
                    progress(plan.plaintext_length(chunk.index))
        except BaseException as exc:  # noqa: BLE001 - handed to the submitting thread
            with lock:
                if not failures:
                    failures.append(exc)
        finally:
            if last:
                # The ciphertext goes now, not when the upload ends: its buffer serves the
                # next chunk (transports were handed copies of its segments).
                buffers.give(chunk.ciphertext)
                job.chunk = None
                inflight.release()

    def answers_probe(peer_id: str) -> bool:
        return _answers_probe(transport, by_id[peer_id], settings.probe_timeout_s)

    def store_with_failover(chunk: _EncryptedChunk, peer_id: str, slot: int) -> None:
        while True:
            try:
                if not replicas.usable(peer_id, answers_probe):
                    # Don't wait out a timeout again for a peer another chunk found dead.
                    raise PeerUnavailable(f"peer {peer_id} failed earlier in this upload")
                _store_one(chunk, by_id[peer_id], slot, settings, streams, faults, ledger,
                           note)
                return
            except MydriveError as raw:
                exc = _as_store_failure(raw, peer_id)
                ledger.failed(peer_id)
                substitute = replicas.substitute(chunk.index, peer_id)
                note("upload.failover", chunk=chunk.index, peer=peer_id,
                     error=type(exc).__name__, substitute=substitute)
                if substitute is None:
                    final = MisbehavingPeer if isinstance(exc, MisbehavingPeer) else \
                        PeerUnavailable
                    silent = f", {len(standby)} of them silent at the start" if standby else ""
                    raise final(
                        f"chunk {chunk.index} lost its replica peer {peer_id} ({exc}); none of "
                        f"the {replicas.live} live peers (of {len(eligible) + len(standby)} "
                        f"known{silent}) can take it: each holds it already or would then "
                        f"hold all {plan.chunk_count} chunks of the file, and no "
                        f"rearrangement of the replicas not yet sent makes room") from exc
                peer_id = substitute

    workers = settings.max_inflight_chunks * settings.replicas
    # StoreChunk streams are reused chunk after chunk (per peer, as many as in use at once)
    # and all closed when the upload ends, however it ends.
    streams = StoreSessions(transport, clock)
    with contextlib.closing(streams), \
            executor(max_workers=workers, name="upload") as pool, open(source, "rb") as f:
        for index in range(plan.chunk_count):
            inflight.acquire()
            with lock:
                failed = bool(failures)
            if failed:
                inflight.release()
                break
            try:
                job = _ChunkJob(_encrypt_chunk(f, plan, index, file_id, file_key,
                                               owner_public_key, settings, buffers),
                                settings.replicas)
            except BaseException:
                inflight.release()
                raise
            for slot, peer_id in enumerate(replicas.begin(index)):
                pool.submit(store_replica, job, peer_id, slot)  # its future is not needed
            del job
    # Leaving the executor waited for every replica.
    if failures:
        raise failures[0]
    note("upload.done", file_id=file_id.hex(), chunk_count=plan.chunk_count)
    return UploadResult(file_id=file_id, plan=plan, wrapped_file_key=wrapped_file_key,
                        chunks=tuple(records[i] for i in range(plan.chunk_count)),
                        ledger=ledger)


def new_file_keys(keys: UserKeys, randomness: Randomness = SYSTEM_RANDOMNESS) -> FileKeys:
    """A fresh file id and file key, the key wrapped for its owner."""
    file_id = randomness.random_bytes(FILE_ID_BYTES)
    file_key = randomness.random_bytes(crypto.KEY_BYTES)
    return FileKeys(file_id=file_id, file_key=file_key,
                    wrapped_file_key=wrap_file_key(keys, file_id, file_key,
                                                   random_bytes=randomness.random_bytes),
                    owner_public_key=keys.identity.public_bytes())


def _as_store_failure(exc: MydriveError, peer_id: str) -> MydriveError:
    """What a failed StoreChunk means. Unreachable, full (TooLarge) and "keeps rejecting"
    (DataLoss) are what an honest peer can answer; any other error class answers a valid
    request with nonsense: the peer misbehaves."""
    if isinstance(exc, (PeerUnavailable, TooLarge, DataLoss, MisbehavingPeer)):
        return exc
    return MisbehavingPeer(f"peer {peer_id} answered a valid StoreChunk with "
                           f"{type(exc).__name__}: {exc}")


def _probe(peers: list[PeerInfo], transport: Transport, timeout_s: float,
           executor: ExecutorFactory) -> tuple[list[PeerInfo], list[PeerInfo]]:
    """(the peers that answer a ChunkStatus probe now, those that don't), probed in
    parallel, order kept."""
    if not peers:
        return peers, []
    with executor(max_workers=min(16, len(peers)), name="probe") as pool:
        answers = list(pool.map(lambda p: _answers_probe(transport, p.address, timeout_s),
                                peers))
    return ([p for p, ok in zip(peers, answers, strict=True) if ok],
            [p for p, ok in zip(peers, answers, strict=True) if not ok])


def _answers_probe(transport: Transport, peer: PeerAddress, timeout_s: float) -> bool:
    """Whether ``peer`` answers a ChunkStatus call now, with anything at all."""
    try:
        transport.chunk_status(peer, PROBE_CHUNK_ID, timeout_s=timeout_s)
    except PeerUnavailable:
        return False
    except MydriveError:
        return True  # it answered, even if with an error
    return True


def _encrypt_chunk(f: BinaryIO, plan: ChunkPlan, index: int, file_id: bytes, file_key: bytes,
                   owner_public_key: bytes, settings: TransferSettings,
                   buffers: ChunkBuffers) -> _EncryptedChunk:
    start, end = plan.chunk_range(index)
    f.seek(start)
    plaintext = buffers.take(end - start)
    if _read_into(f, plaintext) != end - start:
        raise BadRequest("the file changed size while it was being uploaded")
    ciphertext = buffers.take(end - start + GCM_TAG_BYTES)
    crypto.encrypt_chunk_into(file_key, file_id, index, plan.chunk_count, plaintext,
                              ciphertext)
    buffers.give(plaintext)
    seg_digests = tuple(digest(ciphertext[a:b], DIGEST_ALG)
                        for a, b in segment_ranges(len(ciphertext), settings.segment_size_bytes))
    # Under a derived-id scheme the id comes from the digests: the bytes are hashed once.
    chunk_id = chunk_id_for(DIGEST_ALG, ciphertext, settings.segment_size_bytes, seg_digests)
    header = ChunkHeader(chunk_id=chunk_id, digest_alg=DIGEST_ALG,
                         owner_public_key=owner_public_key,
                         chunk_size_bytes=len(ciphertext),
                         segment_size_bytes=settings.segment_size_bytes,
                         segment_digests=seg_digests)
    return _EncryptedChunk(index=index, header=header, ciphertext=ciphertext)


def _read_into(f: BinaryIO, into: memoryview) -> int:
    """Fill ``into`` from ``f``; the bytes read (fewer only at the end of the file)."""
    done = 0
    while done < len(into):
        n = f.readinto(into[done:])  # type: ignore[attr-defined]
        if not n:
            break
        done += n
    return done


def _store_one(chunk: _EncryptedChunk, peer: PeerAddress, slot: int,
               settings: TransferSettings, streams: StoreSessions, faults: FaultHooks,
               ledger: TransferLedger, note: ClockedEvents) -> None:
    """Send one chunk to one receiver; resend exactly the segments it reports bad. The
    stream comes from ``streams`` (maybe one that carried earlier chunks) and goes back to it
    only if the chunk was stored (a failed one is closed)."""
    header = chunk.header
    session, held = streams.start(peer, header)
    stored = False
    try:
        _check_indices(held.indices, header.segment_count, peer.peer_id, chunk.index,
                       "holds")
        if held.committed:
            ledger.stored(peer.peer_id)
            note("upload.stored", chunk=chunk.index, peer=peer.peer_id, held=True)
            stored = True
            return
        to_send = [i for i in range(header.segment_count) if i not in held.indices]
        for attempt in range(settings.max_rounds):
            def segments(indices: list[int] = to_send,
                         attempt: int = attempt) -> Iterator[tuple[int, bytes | memoryview]]:
                # Lazily, one segment at a time: the transport consumes them as it sends.
                # Views, not copies: the transport frames each segment (its one copy) as it
                # sends it, so a round never holds a second copy of the chunk per replica.
                for i in indices:
                    a, b = header.segment_range(i)
                    data = faults.upload_segment(
                        chunk.ciphertext[a:b], chunk_id=header.chunk_id,
                        chunk_index=chunk.index, segment_index=i, replica=slot,
                        peer_id=peer.peer_id, attempt=attempt)
                    ledger.sent(peer.peer_id, chunk.index, i, b - a, resend=attempt > 0)
                    note("upload.sent", chunk=chunk.index, segment=i, peer=peer.peer_id,
                         attempt=attempt)
                    yield i, data

            bad = session.send_round(segments())
            if not bad:
                ledger.stored(peer.peer_id)
                note("upload.stored", chunk=chunk.index, peer=peer.peer_id, held=False)
                stored = True
                return
            _check_indices(bad, header.segment_count, peer.peer_id, chunk.index, "rejects")
            if len(set(bad)) != len(bad):
                raise MisbehavingPeer(f"peer {peer.peer_id} names a segment of chunk "
                                      f"{chunk.index} twice among the bad ones: {bad[:16]}")
            ledger.rejected(peer.peer_id, len(bad))
            note("upload.rejected", chunk=chunk.index, peer=peer.peer_id,
                 segments=tuple(bad))
            to_send = bad
        raise DataLoss(f"peer {peer.peer_id} still rejects segments {to_send} of chunk "
                       f"{chunk.index} after {settings.max_rounds} rounds")
    finally:
        streams.done(peer.peer_id, session, stored=stored)


def _check_indices(indices: Iterable[int], segment_count: int, peer_id: str,
                   chunk_index: int, what: str) -> None:
    """A receiver can only name segments the chunk has; anything else is a lie."""
    wrong = sorted(i for i in indices if not 0 <= i < segment_count)
    if wrong:
        raise MisbehavingPeer(f"peer {peer_id} {what} segments {wrong[:16]} of chunk "
                              f"{chunk_index}, which has segments 0..{segment_count - 1}")
