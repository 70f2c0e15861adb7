"""Repair: carry out a repair plan (mydrive.engine.repair_policy) for one owner.

Only the owner can repair: fetching a chunk needs a request signed by the owner's identity
key, and the new replica is known only once the owner's signed file record lists it. Per
file, in this order (docs/durability.md, "Crash safety"):

1. **Intent.** The record gets the new target peers under ``transfer.durability.strays``
   (signed, written). From here on a copy on those peers is known to the owner, so the
   no-full-file accounting counts it even if the process dies.
2. **Copy.** For each new replica: fetch the chunk's ciphertext from its counted replicas,
   every segment checked against the record (mydrive.engine.download.fetch_chunk), store it
   on the target (StoreChunk; the receiver verifies, fsyncs and renames before it answers;
   only the segments it names bad are sent again), then audit the target under a fresh
   nonce (all segments if it claimed to hold the chunk already). Paced by ``Pacer``.
3. **Commit.** One signed write: each new replica joins its chunk's replicas (and leaves the
   strays); each lost replica, and a rebalanced one, leaves the replicas for the strays.
4. **Clean.** Owner-signed deletes of the strays nobody needs (a retired copy, a target that
   failed its audit); each answered one is crossed off in a last signed write. A stray that
   an audit proved good while its chunk is still below R is kept: the next pass adopts it.

What a crash leaves: after 1, copies on targets the record names as strays (the next pass
audits them, adopts the good ones where a replica is still missing, deletes the rest: it
finishes the repair without moving the bytes again); after 3, retired copies named as
strays (the next pass deletes them). No step removes or unlists a counted replica before its
replacement is committed, so no chunk ever has fewer verified replicas than before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from mydrive.crypto.keys import UserKeys
from mydrive.engine.accounting import TransferLedger
from mydrive.engine.check import (
    DURABILITY_KEY,
    FULL_AUDIT,
    STRAYS_KEY,
    audit_replica,
    strays_of,
)
from mydrive.engine.download import fetch_chunk
from mydrive.engine.repair_policy import (
    ActionKind,
    ChunkHealth,
    FileHealth,
    RepairAction,
    ReplicaHealth,
    ReplicaState,
    Unplaceable,
)
from mydrive.engine.settings import TransferSettings
from mydrive.errors import (
    DataLoss,
    MisbehavingPeer,
    MydriveError,
    PeerUnavailable,
    UntrustedMetadata,
)
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.formats.filerecord import ChunkRecord, FileRecord
from mydrive.formats.tombstone import tomb_doc_id
from mydrive.metadata.base import MetadataStore
from mydrive.metadata.signed import verify_file
from mydrive.metadata.trusted import write_signed
from mydrive.runtime.clock import Clock
from mydrive.runtime.events import NO_EVENTS, ClockedEvents, EventRecorder
from mydrive.runtime.randomness import Randomness
from mydrive.transport.base import PeerAddress, Transport
from mydrive.transport.signed_delete import MAX_DELETE_CHUNK_IDS, sign_delete

log = logging.getLogger("mydrive.engine.repair")

MAX_REPORTED_ERRORS = 100

# Where a repair may be interrupted (the hooks are told as each is reached).
INTENT_WRITTEN = "intent-written"
REPLICA_STORED = "replica-stored"
RECORD_COMMITTED = "record-committed"
STRAYS_CLEANED = "strays-cleaned"


class RepairHooks(Protocol):
    def reached(self, point: str, /, **where: str | int) -> None:
        """A repair step is done (``point`` is one of the constants above); a test or the
        simulator may raise here to interrupt the repair as a crash would."""
        ...


class NoRepairHooks:
    """The product's hooks: nothing happens."""

    def reached(self, point: str, /, **where: str | int) -> None:
        return None


NO_REPAIR_HOOKS = NoRepairHooks()


class Pacer:
    """Keeps the bytes a repair moves (fetched plus stored) at most ``max_bytes_per_s`` on
    average since it started, by sleeping on the handed-in clock; None: no limit."""

    def __init__(self, clock: Clock, max_bytes_per_s: float | None) -> None:
        assert max_bytes_per_s is None or max_bytes_per_s > 0
        self.clock = clock
        self.max_bytes_per_s = max_bytes_per_s
        self.started_s = clock.monotonic_s()
        self.spent_bytes = 0
        self.slept_s = 0.0

    def spend(self, nbytes: int) -> None:
        self.spent_bytes += nbytes
        if self.max_bytes_per_s is None:
            return
        due_s = self.spent_bytes / self.max_bytes_per_s
        elapsed_s = self.clock.monotonic_s() - self.started_s
        if due_s > elapsed_s:
            self.clock.sleep(due_s - elapsed_s)
            self.slept_s += due_s - elapsed_s


@dataclass
class RepairReport:
    """What repairs did in one check or pass: replicas, bytes, deletes, and what failed."""

    replicated: int = 0      # new replicas copied, verified and committed
    adopted: int = 0         # strays proven good and listed (no bytes moved)
    moved: int = 0           # rebalance: replicas moved to a preferred peer
    failed: int = 0          # copies that did not make it (the chunk is tried again later)
    bytes_verified: int = 0  # fetched back from new replicas to audit them
    strays_deleted: int = 0  # copies removed from peers
    strays_cleared: int = 0  # stray entries crossed off (removed, or the peer had none)
    records_written: int = 0
    files_skipped: int = 0   # the record changed or went away meanwhile: next pass
    deferred: int = 0        # replicas the budget left to a later pass
    unplaceable: list[Unplaceable] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    ledger: TransferLedger = field(default_factory=TransferLedger)
    paced_s: float = 0.0

    def error(self, text: str) -> None:
        log.warning("%s", text)
        if len(self.errors) < MAX_REPORTED_ERRORS:
            self.errors.append(text)

    @property
    def bytes_fetched(self) -> int:
        return self.ledger.totals().bytes_fetched

    @property
    def bytes_stored(self) -> int:
        return self.ledger.totals().bytes_sent

    def to_json(self) -> dict[str, Any]:
        return {"replicated": self.replicated, "adopted": self.adopted, "moved": self.moved,
                "failed": self.failed, "bytes_fetched": self.bytes_fetched,
                "bytes_stored": self.bytes_stored, "bytes_verified": self.bytes_verified,
                "strays_deleted": self.strays_deleted, "strays_cleared": self.strays_cleared,
                "records_written": self.records_written, "files_skipped": self.files_skipped,
                "deferred": self.deferred, "paced_s": round(self.paced_s, 3),
                "unplaceable": [u.to_json() for u in self.unplaceable],
                "errors": list(self.errors)}


class _FileGone(Exception):
    """The record was removed or rewritten by someone else since it was checked."""


@dataclass
class _Repairer:
    keys: UserKeys
    store: MetadataStore
    peers: Mapping[str, PeerAddress]
    reachable: frozenset[str]
    transport: Transport
    clock: Clock
    randomness: Randomness
    settings: TransferSettings
    verify_segments: int
    replicas: int
    pacer: Pacer
    report: RepairReport
    hooks: RepairHooks
    note: ClockedEvents
    failed_targets: set[str] = field(default_factory=set)

    # ---- the record --------------------------------------------------------------------
    def current(self, record: FileRecord) -> FileRecord:
        """The record as stored now; _FileGone unless it is still the one checked."""
        if self.store.get(tomb_doc_id(record.owner_id, record.file_id)) is not None:
            raise _FileGone(f"file {record.file_id.hex()} was removed meanwhile")
        doc = self.store.get(record.doc_id)
        if doc is None:
            raise _FileGone(f"file {record.file_id.hex()} was removed meanwhile")
        try:
            now = verify_file(record.doc_id, doc, owner_key=self.keys.identity.public_bytes())
        except UntrustedMetadata as exc:
            raise _FileGone(f"file {record.file_id.hex()}: {exc}") from None
        if now.updated_ms != record.updated_ms:
            raise _FileGone(f"file {record.file_id.hex()} changed since it was checked")
        return now

    def write(self, record: FileRecord, strays: Mapping[str, set[int]], *,
              repaired: int = 0, repair_bytes: int = 0) -> FileRecord:
        """The record with ``strays`` (and the repair counters), signed and written."""
        now_ms = self.clock.now_ms()
        if self.store.get(tomb_doc_id(record.owner_id, record.file_id)) is not None:
            raise _FileGone(f"file {record.file_id.hex()} was removed meanwhile")
        transfer = dict(record.transfer)
        section = dict(transfer.get(DURABILITY_KEY) or {})
        section[STRAYS_KEY] = {p: sorted(idx) for p, idx in sorted(strays.items()) if idx}
        if repaired or repair_bytes:
            section["replicas_repaired"] = int(section.get("replicas_repaired", 0)) + repaired
            section["repair_bytes"] = int(section.get("repair_bytes", 0)) + repair_bytes
            section["last_repair_ms"] = now_ms
        transfer[DURABILITY_KEY] = section
        new = replace(record, transfer=transfer,
                      updated_ms=max(now_ms, record.updated_ms + 1))
        write_signed(self.store, new.doc_id, new.to_doc(), self.keys.identity)
        self.report.records_written += 1
        return new

    # ---- one file ----------------------------------------------------------------------
    def repair_file(self, record: FileRecord, health: FileHealth,
                    actions: Sequence[RepairAction]) -> tuple[FileRecord, FileHealth]:
        record = self.current(record)
        fid = record.file_id.hex()
        strays = strays_of(record)
        copies = [a for a in actions if a.kind != ActionKind.ADOPT]
        intended = {p: set(idx) for p, idx in strays.items()}
        for action in copies:
            intended.setdefault(action.target, set()).add(action.chunk_index)
        if intended != strays:
            record = self.write(record, intended)
            strays = intended
            self.note("repair.intent", file_id=fid, targets=tuple(sorted(
                f"{a.chunk_index}:{a.target}" for a in copies)))
            self.hooks.reached(INTENT_WRITTEN, file_id=fid)
        done: list[RepairAction] = []
        moved_bytes = 0
        for action in actions:
            if action.kind == ActionKind.ADOPT:
                done.append(action)
                continue
            try:
                moved_bytes += self.copy(record, action)
            except MydriveError as exc:
                self.report.failed += 1
                self.failed_targets.add(action.target)
                self.report.error(f"file {fid} chunk {action.chunk_index}: new replica on "
                                  f"{action.target} failed: {type(exc).__name__}: {exc}")
                self.note("repair.failed", file_id=fid, chunk=action.chunk_index,
                          peer=action.target, error=type(exc).__name__)
                continue
            done.append(action)
            self.hooks.reached(REPLICA_STORED, file_id=fid, chunk=action.chunk_index,
                               peer=action.target)
        if done:
            chunks, strays = _commit(record, done, strays)
            record = self.write(replace(record, chunks=chunks), strays,
                                repaired=sum(1 for a in done if a.kind != ActionKind.MOVE),
                                repair_bytes=moved_bytes)
            for action in done:
                if action.kind == ActionKind.ADOPT:
                    self.report.adopted += 1
                elif action.kind == ActionKind.MOVE:
                    self.report.moved += 1
                else:
                    self.report.replicated += 1
            self.note("repair.committed", file_id=fid, replicas=len(done))
            self.hooks.reached(RECORD_COMMITTED, file_id=fid)
        health = _refresh(health, record, done)
        record = self.clean(record, health)
        return record, _refresh(health, record, ())

    def copy(self, record: FileRecord, action: RepairAction) -> int:
        """Copy one chunk to ``action.target`` and prove it arrived; bytes moved."""
        chunk = record.chunks[action.chunk_index]
        target = self.peers.get(action.target)
        if target is None:
            raise PeerUnavailable(f"no address known for peer {action.target}")
        sources = tuple(p for p in action.sources if p in chunk.replicas)
        before = self.report.ledger.totals()
        ciphertext = fetch_chunk(replace(chunk, replicas=sources), keys=self.keys,
                                 peers=self.peers, transport=self.transport, clock=self.clock,
                                 randomness=self.randomness, ledger=self.report.ledger,
                                 settings=self.settings, digest_alg=record.digest_alg)
        self.pacer.spend(len(ciphertext))
        header = ChunkHeader(chunk_id=chunk.chunk_id, digest_alg=record.digest_alg,
                             owner_public_key=self.keys.identity.public_bytes(),
                             chunk_size_bytes=chunk.size_bytes,
                             segment_size_bytes=chunk.segment_size_bytes,
                             segment_digests=chunk.segment_digests)
        held = _store(header, ciphertext, target, chunk.index, transport=self.transport,
                      max_rounds=self.settings.max_rounds, ledger=self.report.ledger)
        del ciphertext
        after = self.report.ledger.totals()
        sent = after.bytes_sent - before.bytes_sent
        self.pacer.spend(sent)
        # Its word is not enough: prove the new replica holds the chunk (every segment, if
        # it claimed to have it already, since then nothing was sent).
        proof = audit_replica(chunk, target, file_id=record.file_id, peer_id=action.target,
                              keys=self.keys, transport=self.transport, clock=self.clock,
                              randomness=self.randomness,
                              segments=FULL_AUDIT if held else self.verify_segments,
                              digest_alg=record.digest_alg)
        self.report.bytes_verified += proof.bytes_fetched
        if proof.state != ReplicaState.GOOD:
            raise DataLoss(f"the new replica did not pass its audit ({proof.state.value}"
                           f"{': ' + proof.detail if proof.detail else ''})")
        self.note("repair.stored", file_id=record.file_id.hex(), chunk=chunk.index,
                  peer=action.target, held=held)
        return (after.bytes_fetched - before.bytes_fetched) + sent

    def clean(self, record: FileRecord, health: FileHealth) -> FileRecord:
        """Delete the strays nobody needs from the peers that answer; cross them off."""
        strays = strays_of(record)
        if not strays:
            return record
        keep: dict[str, set[int]] = {}
        due: dict[str, list[int]] = {}
        by_index = {c.index: c for c in health.chunks}
        for peer_id, indices in sorted(strays.items()):
            for index in sorted(indices):
                chunk = by_index.get(index)
                if peer_id in record.chunks[index].replicas:
                    continue  # listed as a replica: not a stray any more
                if chunk is not None and _keep_stray(chunk, peer_id, self.replicas):
                    keep.setdefault(peer_id, set()).add(index)
                elif peer_id in self.reachable and peer_id in self.peers:
                    due.setdefault(peer_id, []).append(index)
                else:
                    keep.setdefault(peer_id, set()).add(index)
        for peer_id, listed in due.items():
            ids = [record.chunks[i].chunk_id for i in listed]
            try:
                for start in range(0, len(ids), MAX_DELETE_CHUNK_IDS):
                    signed = sign_delete(self.keys.identity,
                                         chunk_ids=ids[start:start + MAX_DELETE_CHUNK_IDS],
                                         target_peer_id=peer_id, clock=self.clock,
                                         random_bytes=self.randomness.random_bytes)
                    outcome = self.transport.delete_chunks(self.peers[peer_id], signed)
                    self.report.strays_deleted += len(outcome.removed)
                    self.report.strays_cleared += len(outcome.removed) + len(outcome.absent)
            except MydriveError as exc:
                self.report.error(f"file {record.file_id.hex()}: stray copies on {peer_id} "
                                  f"not deleted yet: {type(exc).__name__}: {exc}")
                keep.setdefault(peer_id, set()).update(listed)
                continue
            self.note("repair.stray_deleted", file_id=record.file_id.hex(), peer=peer_id,
                      chunks=tuple(listed))
        if keep != strays:
            record = self.write(record, keep)
            self.hooks.reached(STRAYS_CLEANED, file_id=record.file_id.hex())
        return record


def _keep_stray(chunk: ChunkHealth, peer_id: str, replicas: int) -> bool:
    """A stray proven good is kept while its chunk is below R: the next pass adopts it."""
    state = next((s.state for s in chunk.strays if s.peer_id == peer_id), None)
    return state == ReplicaState.GOOD and len(chunk.counted()) < replicas


def _commit(record: FileRecord, done: Sequence[RepairAction],
            strays: Mapping[str, set[int]]) -> tuple[tuple[ChunkRecord, ...],
                                                     dict[str, set[int]]]:
    """New replicas join their chunks; retired ones (lost, or moved away) become strays."""
    chunks = list(record.chunks)
    new_strays = {p: set(idx) for p, idx in strays.items()}
    for index in sorted({a.chunk_index for a in done}):
        acts = [a for a in done if a.chunk_index == index]
        drop = {p for a in acts for p in a.drop}
        kept = [p for p in chunks[index].replicas if p not in drop]
        # (a target listed already, lost and stored again, is appended after the kept ones)
        added = [a.target for a in acts if a.target not in kept]
        chunks[index] = replace(chunks[index], replicas=tuple(kept + added))
        for peer_id in added:
            new_strays.get(peer_id, set()).discard(index)
        for peer_id in drop - set(added):  # (a peer may lose a chunk and get it again)
            new_strays.setdefault(peer_id, set()).add(index)
    return tuple(chunks), {p: idx for p, idx in new_strays.items() if idx}


def _refresh(health: FileHealth, record: FileRecord,
             done: Sequence[RepairAction]) -> FileHealth:
    """The file's health after ``done`` committed: new replicas proven good, states of the
    others as checked, strays as checked (a new stray is not known good)."""
    added = {(a.chunk_index, a.target) for a in done}
    strays = strays_of(record)
    chunks = []
    for chunk in record.chunks:
        old = next((c for c in health.chunks if c.index == chunk.index), None)
        known = {r.peer_id: r.state for r in (old.replicas + old.strays)} if old else {}
        replicas = tuple(ReplicaHealth(p, ReplicaState.GOOD if (chunk.index, p) in added
                                       else known.get(p, ReplicaState.UNAUDITED))
                         for p in chunk.replicas)
        # A retired replica keeps the state it was checked in; a new stray is unknown.
        stray_health = tuple(ReplicaHealth(p, known.get(p, ReplicaState.UNAUDITED))
                             for p, idx in sorted(strays.items())
                             if chunk.index in idx and p not in chunk.replicas)
        chunks.append(ChunkHealth(chunk.index, chunk.size_bytes, replicas, stray_health))
    return FileHealth(record.file_id, tuple(chunks))


def _store(header: ChunkHeader, ciphertext: bytes, peer: PeerAddress, chunk_index: int, *,
           transport: Transport, max_rounds: int, ledger: TransferLedger) -> bool:
    """StoreChunk to one receiver, resending exactly the segments it names bad; True if it
    said it held the chunk already (nothing was sent)."""
    session = transport.open_store(peer)
    try:
        held = session.start(header)
        if any(not 0 <= i < header.segment_count for i in held.indices):
            raise MisbehavingPeer(f"peer {peer.peer_id} claims segments outside the chunk")
        if held.committed:
            ledger.stored(peer.peer_id)
            return True
        to_send = [i for i in range(header.segment_count) if i not in held.indices]
        for attempt in range(max_rounds):
            def segments(indices: list[int] = to_send,
                         resend: bool = attempt > 0) -> Iterator[tuple[int, bytes]]:
                for i in indices:
                    a, b = header.segment_range(i)
                    ledger.sent(peer.peer_id, chunk_index, i, b - a, resend=resend)
                    yield i, ciphertext[a:b]

            bad = session.send_round(segments())
            if not bad:
                ledger.stored(peer.peer_id)
                return False
            if len(set(bad)) != len(bad) or any(not 0 <= i < header.segment_count
                                                for i in bad):
                raise MisbehavingPeer(f"peer {peer.peer_id} names impossible bad segments "
                                      f"{bad[:16]}")
            ledger.rejected(peer.peer_id, len(bad))
            to_send = list(bad)
        raise DataLoss(f"peer {peer.peer_id} still rejects segments {to_send[:16]} after "
                       f"{max_rounds} rounds")
    finally:
        session.close()


def execute_plan(actions: Sequence[RepairAction], records: Mapping[bytes, FileRecord],
                 health: Mapping[bytes, FileHealth], *, keys: UserKeys, store: MetadataStore,
                 peers: Mapping[str, PeerAddress], reachable: frozenset[str],
                 transport: Transport, clock: Clock, randomness: Randomness,
                 settings: TransferSettings, verify_segments: int, pacer: Pacer,
                 report: RepairReport, hooks: RepairHooks = NO_REPAIR_HOOKS,
                 events: EventRecorder = NO_EVENTS,
                 clean_files: Sequence[bytes] = ()) -> Executed:
    """Carry out ``actions`` file by file (intent, copy, commit, clean), and clean the
    strays of ``clean_files`` too; returns the records as written and their health (the
    other files unchanged), and the targets that failed. A file whose record changed
    meanwhile is skipped and counted (``files_skipped``)."""
    repairer = _Repairer(keys=keys, store=store, peers=peers, reachable=reachable,
                         transport=transport, clock=clock, randomness=randomness,
                         settings=settings, verify_segments=verify_segments,
                         replicas=settings.replicas, pacer=pacer, report=report, hooks=hooks,
                         note=ClockedEvents(events, clock))
    by_file: dict[bytes, list[RepairAction]] = {}
    for action in actions:
        by_file.setdefault(action.file_id, []).append(action)
    for file_id in clean_files:
        by_file.setdefault(file_id, [])
    executed = Executed()
    for file_id in sorted(by_file):
        try:
            record, after = repairer.repair_file(records[file_id], health[file_id],
                                                 by_file[file_id])
        except _FileGone as exc:
            report.files_skipped += 1
            report.error(str(exc))
            continue
        executed.records[file_id] = record
        executed.health[file_id] = after
    executed.failed_targets = set(repairer.failed_targets)
    report.paced_s = pacer.slept_s
    return executed


@dataclass
class Executed:
    """What ``execute_plan`` changed: records as written, their health, failed targets."""

    records: dict[bytes, FileRecord] = field(default_factory=dict)
    health: dict[bytes, FileHealth] = field(default_factory=dict)
    failed_targets: set[str] = field(default_factory=set)
