"""Upload: encrypt a local file chunk by chunk and store every chunk on R peers.

Memory stays flat: at most ``max_inflight_chunks`` chunks are read and encrypted at once.
A replica peer that fails is replaced by another eligible peer, still never letting one
peer hold every chunk of the file. Only the segments a receiver reports bad are resent.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from mydrive.crypto import primitives as crypto
from mydrive.crypto.keys import UserKeys, wrap_file_key
from mydrive.engine.accounting import TransferLedger
from mydrive.engine.settings import TransferSettings
from mydrive.errors import (
    BadRequest,
    DataLoss,
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
from mydrive.formats.digest import DIGEST_ALG, digest
from mydrive.formats.filerecord import ChunkRecord
from mydrive.formats.placement import PeerSlot, place_chunks
from mydrive.runtime.clock import Clock
from mydrive.runtime.faults import NO_FAULTS, FaultHooks
from mydrive.transport.base import PeerAddress, Transport

GCM_TAG_BYTES = 16
FILE_ID_BYTES = 16

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


@dataclass
class _EncryptedChunk:
    index: int
    header: ChunkHeader
    ciphertext: bytes


class _Replicas:
    """Who holds (or is being given) each chunk; chooses substitutes for failed peers."""

    def __init__(self, file_id: bytes, placement: list[list[str]], eligible: Sequence[str]):
        self.file_id = file_id
        self.chunk_count = len(placement)
        self.assigned = [list(p) for p in placement]
        self.failed: set[str] = set()
        self.eligible = list(eligible)
        self._lock = threading.Lock()

    def substitute(self, chunk_index: int, failed_peer: str) -> str | None:
        with self._lock:
            self.failed.add(failed_peer)
            current = self.assigned[chunk_index]
            counts: dict[str, int] = {}
            for peers in self.assigned:
                for p in peers:
                    counts[p] = counts.get(p, 0) + 1
            # The least loaded live peer first, so a dead peer's chunks spread out instead of
            # filling one or two peers up to the "not every chunk" limit; ties broken by a
            # hash of (file, chunk, peer), deterministic like the placement itself.
            candidates = sorted(
                (p for p in self.eligible if p not in current and p not in self.failed
                 and counts.get(p, 0) + 1 < self.chunk_count),
                key=lambda p: (counts.get(p, 0),
                               digest(self.file_id + chunk_index.to_bytes(4, "big") + p.encode())),
            )
            current.remove(failed_peer)
            if not candidates:
                return None
            current.append(candidates[0])
            return candidates[0]


def upload_file(source: Path, *, keys: UserKeys, owner_peer_id: str | None,
                peers: Sequence[PeerInfo], settings: TransferSettings, transport: Transport,
                clock: Clock, faults: FaultHooks = NO_FAULTS,
                random_bytes: Callable[[int], bytes] = os.urandom,
                progress: Progress | None = None) -> UploadResult:
    del clock  # uploads need no time today; kept so callers pass one engine-wide clock
    size = source.stat().st_size
    eligible = _reachable([p for p in peers if p.peer_id != owner_peer_id], transport,
                          settings.probe_timeout_s)
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
    file_id = random_bytes(FILE_ID_BYTES)
    file_key = random_bytes(crypto.KEY_BYTES)
    stored_sizes = [plan.plaintext_length(i) + GCM_TAG_BYTES for i in range(plan.chunk_count)]
    slots = [PeerSlot(peer_id=p.peer_id, capacity_bytes=p.capacity_bytes,
                      free_bytes=p.capacity_bytes) for p in eligible]
    placement = place_chunks(file_id, stored_sizes, slots, replicas=settings.replicas,
                             owner_peer_id=owner_peer_id)
    replicas = _Replicas(file_id, placement, [p.peer_id for p in eligible])
    by_id = {p.peer_id: p.address for p in eligible}
    ledger = TransferLedger()
    records: dict[int, ChunkRecord] = {}
    inflight = threading.BoundedSemaphore(settings.max_inflight_chunks)
    workers = settings.max_inflight_chunks * settings.replicas

    def chunk_done(chunk: _EncryptedChunk, replica_futures: list[Future[None]]) -> None:
        """Runs once every replica of ``chunk`` finished, whatever the outcome."""
        try:
            if all(f.exception() is None for f in replica_futures):
                records[chunk.index] = ChunkRecord(
                    index=chunk.index, chunk_id=chunk.header.chunk_id,
                    size_bytes=chunk.header.chunk_size_bytes,
                    segment_size_bytes=chunk.header.segment_size_bytes,
                    segment_digests=chunk.header.segment_digests,
                    replicas=tuple(replicas.assigned[chunk.index]))
                if progress is not None:
                    progress(plan.plaintext_length(chunk.index))
        finally:
            inflight.release()

    def store_replicas(chunk: _EncryptedChunk) -> list[Future[None]]:
        # Each replica streams on its own thread, so the R peers receive in parallel.
        replica_futures = [pool.submit(_store_with_failover, chunk, peer_id, slot)
                           for slot, peer_id in enumerate(list(replicas.assigned[chunk.index]))]
        remaining = [len(replica_futures)]
        lock = threading.Lock()

        def one_done(_: Future[None]) -> None:
            with lock:
                remaining[0] -= 1
                last = remaining[0] == 0
            if last:
                chunk_done(chunk, replica_futures)

        for fut in replica_futures:
            fut.add_done_callback(one_done)
        return replica_futures

    def _store_with_failover(chunk: _EncryptedChunk, peer_id: str, slot: int) -> None:
        while True:
            try:
                if peer_id in replicas.failed:
                    # Don't wait out a timeout again for a peer another chunk found dead.
                    raise PeerUnavailable(f"peer {peer_id} failed earlier in this upload")
                _store_one(chunk, by_id[peer_id], slot, settings, transport, faults, ledger)
                return
            except (PeerUnavailable, TooLarge, DataLoss) as exc:
                ledger.failed(peer_id)
                substitute = replicas.substitute(chunk.index, peer_id)
                if substitute is None:
                    live = len(eligible) - len(replicas.failed)
                    raise PeerUnavailable(
                        f"chunk {chunk.index} lost its replica peer {peer_id} ({exc}); none of "
                        f"the {live} live peers (of {len(eligible)} eligible) can take it: each "
                        f"holds it already or would then hold all {plan.chunk_count} chunks "
                        f"of the file") from exc
                peer_id = substitute

    futures: list[Future[None]] = []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="upload") as pool, \
            open(source, "rb") as f:
        for index in range(plan.chunk_count):
            inflight.acquire()
            if any(fut.done() and fut.exception() for fut in futures):
                inflight.release()
                break
            try:
                chunk = _encrypt_chunk(f, plan, index, file_id, file_key, keys, settings)
            except BaseException:
                inflight.release()
                raise
            futures.extend(store_replicas(chunk))
        for fut in futures:
            fut.result()  # re-raises the first failure
    return UploadResult(file_id=file_id, plan=plan,
                        wrapped_file_key=wrap_file_key(keys, file_id, file_key),
                        chunks=tuple(records[i] for i in range(plan.chunk_count)),
                        ledger=ledger)


def _reachable(peers: list[PeerInfo], transport: Transport, timeout_s: float) -> list[PeerInfo]:
    """The peers that answer a ChunkStatus probe now, probed in parallel, order kept."""
    if not peers:
        return peers
    probe_id = bytes(32)  # no chunk has this id; any answer at all means "up"

    def up(peer: PeerInfo) -> bool:
        try:
            transport.chunk_status(peer.address, probe_id, timeout_s=timeout_s)
        except PeerUnavailable:
            return False
        except MydriveError:
            return True  # it answered, even if with an error
        return True

    with ThreadPoolExecutor(max_workers=min(16, len(peers)), thread_name_prefix="probe") as pool:
        answers = list(pool.map(up, peers))
    return [p for p, ok in zip(peers, answers, strict=True) if ok]


def _encrypt_chunk(f: BinaryIO, plan: ChunkPlan, index: int, file_id: bytes, file_key: bytes,
                   keys: UserKeys, settings: TransferSettings) -> _EncryptedChunk:
    start, end = plan.chunk_range(index)
    f.seek(start)
    plaintext = f.read(end - start)
    if len(plaintext) != end - start:
        raise BadRequest("the file changed size while it was being uploaded")
    ciphertext = crypto.encrypt_chunk(file_key, file_id, index, plan.chunk_count, plaintext)
    seg_digests = tuple(digest(ciphertext[a:b])
                        for a, b in segment_ranges(len(ciphertext), settings.segment_size_bytes))
    header = ChunkHeader(chunk_id=digest(ciphertext), digest_alg=DIGEST_ALG,
                         owner_public_key=keys.identity.public_bytes(),
                         chunk_size_bytes=len(ciphertext),
                         segment_size_bytes=settings.segment_size_bytes,
                         segment_digests=seg_digests)
    return _EncryptedChunk(index=index, header=header, ciphertext=ciphertext)


def _store_one(chunk: _EncryptedChunk, peer: PeerAddress, slot: int,
               settings: TransferSettings,
               transport: Transport, faults: FaultHooks, ledger: TransferLedger) -> None:
    """Send one chunk to one receiver; resend exactly the segments it reports bad."""
    header = chunk.header
    session = transport.open_store(peer)
    try:
        held = session.start(header)
        if held.committed:
            ledger.stored(peer.peer_id)
            return
        to_send = [i for i in range(header.segment_count) if i not in held.indices]
        for attempt in range(settings.max_rounds):
            def segments(indices: list[int] = to_send,
                         attempt: int = attempt) -> list[tuple[int, bytes]]:
                out = []
                for i in indices:
                    a, b = header.segment_range(i)
                    data = faults.upload_segment(
                        chunk.ciphertext[a:b], chunk_id=header.chunk_id, chunk_index=chunk.index,
                        segment_index=i, replica=slot, peer_id=peer.peer_id, attempt=attempt)
                    ledger.sent(peer.peer_id, chunk.index, i, b - a, resend=attempt > 0)
                    out.append((i, data))
                return out

            bad = session.send_round(segments())
            if not bad:
                ledger.stored(peer.peer_id)
                return
            ledger.rejected(peer.peer_id, len(bad))
            to_send = bad
        raise DataLoss(f"peer {peer.peer_id} still rejects segments {to_send} of chunk "
                       f"{chunk.index} after {settings.max_rounds} rounds")
    finally:
        session.close()
