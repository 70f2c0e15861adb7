"""Check: what the owner can prove about each replica of its files, now.

An audit is an owner-signed fetch (mydrive.transport.signed_fetch: fresh timestamp and
16-byte nonce, aimed at one peer) of a random subset of a chunk's segments, chosen by the
owner's randomness after the request is made, verified against the segment digests of the
owner's signed file record. A peer can pass only by sending those very bytes: its word
(``ChunkStatus`` says "committed") counts for nothing, a copy of an earlier answer is of no
use (other segments are asked, under another nonce), and it can't borrow the bytes from
another replica (fetches are signed for one target peer, and only the owner signs). A peer
that keeps a fraction f of a chunk's segments passes an audit of k segments with
probability at most about f^k; ``k = all`` (``mydrive check --verify``) leaves it none.

A segment that fails its digest is asked once more under a fresh nonce: bad again, the
replica is ``CORRUPT`` (bit rot); good the second time, it was damaged in transit. Before
auditing, every known peer is probed (``ChunkStatus`` of a chunk no one has, the cheap "are
you there"); what the probes and the audits saw feeds the ``LivenessBook`` that tells a dead
peer from a flapping one (mydrive.engine.repair_policy).

The record may also list, under ``transfer.durability.strays``, peers that may hold a copy
outside its replicas (mydrive.engine.repair writes them); they are read and audited here too.
Nothing is written: a crash leaves nothing behind.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mydrive.crypto.keys import UserKeys
from mydrive.engine.repair_policy import (
    ChunkHealth,
    FileHealth,
    LivenessBook,
    PeerStatus,
    ReplicaHealth,
    ReplicaState,
)
from mydrive.errors import (
    ChunkNotFound,
    DataLoss,
    MisbehavingPeer,
    MydriveError,
    PeerUnavailable,
    PermissionDenied,
)
from mydrive.formats.chunkheader import MAX_SEGMENTS
from mydrive.formats.digest import WHOLE_CHUNK_ALG, digest, digests_equal
from mydrive.formats.filerecord import ChunkRecord, FileRecord
from mydrive.runtime.clock import Clock
from mydrive.runtime.events import NO_EVENTS, ClockedEvents, EventRecorder
from mydrive.runtime.executor import ExecutorFactory, thread_pool
from mydrive.runtime.randomness import Randomness
from mydrive.transport.base import PeerAddress, Transport
from mydrive.transport.signed_fetch import sign_fetch

FULL_AUDIT = MAX_SEGMENTS  # as many segments as a chunk can have: all of them
DURABILITY_KEY = "durability"  # the record's ``transfer`` section repairs write
STRAYS_KEY = "strays"
MAX_STRAY_PEERS = 4096
MAX_LISTED_PROBLEMS = 1000
_PROBE_CHUNK_ID = bytes(32)  # no chunk has this id; any answer at all means "up"

# (file id, chunk index, peer id, is a stray) -> segments to audit (0: none, FULL_AUDIT: all)
AuditDepth = Callable[[bytes, int, str, bool], int]


@dataclass(frozen=True)
class AuditResult:
    """What one audit of one replica proved."""

    file_id: bytes
    chunk_index: int
    peer_id: str
    state: ReplicaState
    segments_checked: int = 0
    bytes_fetched: int = 0
    bad_segments: tuple[int, ...] = ()   # failed their digest twice
    transient_bad: int = 0               # failed once, good when asked again
    detail: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"file_id": self.file_id.hex(), "chunk": self.chunk_index,
                "peer": self.peer_id, "state": self.state.value,
                "segments_checked": self.segments_checked,
                "bytes_fetched": self.bytes_fetched, "bad_segments": list(self.bad_segments),
                "detail": self.detail}


@dataclass
class AuditTotals:
    """Counters of a set of audits (thread-safe)."""

    replicas: int = 0
    segments: int = 0
    bytes: int = 0
    transient_bad_segments: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, result: AuditResult) -> None:
        with self._lock:
            self.replicas += 1
            self.segments += result.segments_checked
            self.bytes += result.bytes_fetched
            self.transient_bad_segments += result.transient_bad
            key = result.state.value
            self.by_state[key] = self.by_state.get(key, 0) + 1

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {"replicas": self.replicas, "segments": self.segments, "bytes": self.bytes,
                    "transient_bad_segments": self.transient_bad_segments,
                    "by_state": dict(sorted(self.by_state.items()))}


def strays_of(record: FileRecord) -> dict[str, set[int]]:
    """Peers that may hold a copy of a chunk outside the record's replicas (our own signed
    note, written by mydrive.engine.repair); indices out of range are ignored."""
    section = record.transfer.get(DURABILITY_KEY)
    raw = section.get(STRAYS_KEY) if isinstance(section, dict) else None
    strays: dict[str, set[int]] = {}
    if not isinstance(raw, dict):
        return strays
    count = record.plan.chunk_count
    for peer_id, indices in list(raw.items())[:MAX_STRAY_PEERS]:
        if not isinstance(peer_id, str) or not isinstance(indices, list):
            continue
        good = {i for i in indices if isinstance(i, int) and not isinstance(i, bool)
                and 0 <= i < count}
        if good:
            strays[peer_id] = good
    return strays


def sample_segments(count: int, wanted: int, randomness: Randomness) -> tuple[int, ...]:
    """``wanted`` distinct segment indices of ``count``, drawn from ``randomness`` (all of
    them when ``wanted >= count``), sorted."""
    if wanted >= count:
        return tuple(range(count))
    pool = list(range(count))
    for i in range(wanted):  # a partial Fisher-Yates shuffle
        j = i + int.from_bytes(randomness.random_bytes(4), "big") % (count - i)
        pool[i], pool[j] = pool[j], pool[i]
    return tuple(sorted(pool[:wanted]))


def _segment_length(chunk: ChunkRecord, index: int) -> int:
    start = index * chunk.segment_size_bytes
    return min(chunk.segment_size_bytes, chunk.size_bytes - start)


@dataclass
class _Answer:
    state: ReplicaState
    checked: int = 0
    nbytes: int = 0
    bad: list[int] = field(default_factory=list)
    detail: str = ""


def _ask(chunk: ChunkRecord, peer: PeerAddress, wanted: Sequence[int], *, keys: UserKeys,
         transport: Transport, clock: Clock, randomness: Randomness,
         digest_alg: str) -> _Answer:
    """One signed fetch of ``wanted`` segments, each checked against the record."""
    count = len(chunk.segment_digests)
    asked = [] if len(wanted) == count else list(wanted)
    signed = sign_fetch(keys.identity, chunk_id=chunk.chunk_id, target_peer_id=peer.peer_id,
                        segment_indices=asked, clock=clock,
                        random_bytes=randomness.random_bytes)
    answer = _Answer(ReplicaState.GOOD)
    wanted_set = set(wanted)
    got: set[int] = set()
    try:
        for index, data in transport.fetch(peer, signed):
            if index not in wanted_set or index in got:
                raise MisbehavingPeer(f"sent segment {index}, which was not asked for or "
                                      f"came twice")
            got.add(index)
            if len(data) != _segment_length(chunk, index):
                raise MisbehavingPeer(f"sent segment {index} as {len(data)} bytes; it has "
                                      f"{_segment_length(chunk, index)}")
            answer.checked += 1
            answer.nbytes += len(data)
            if not digests_equal(digest(data, digest_alg), chunk.segment_digests[index]):
                answer.bad.append(index)
        if got != wanted_set:
            raise MisbehavingPeer(f"ended the stream after {len(got)} of the {len(wanted_set)} "
                                  f"segments asked for")
    except PeerUnavailable as exc:
        return _Answer(ReplicaState.UNREACHABLE, answer.checked, answer.nbytes, [], str(exc))
    except ChunkNotFound as exc:
        return _Answer(ReplicaState.MISSING, answer.checked, answer.nbytes, [], str(exc))
    except DataLoss as exc:
        return _Answer(ReplicaState.CORRUPT, answer.checked, answer.nbytes, [], str(exc))
    except PermissionDenied as exc:
        return _Answer(ReplicaState.REFUSED, answer.checked, answer.nbytes, [], str(exc))
    except MydriveError as exc:  # a lie, or an error class no honest sender gives
        return _Answer(ReplicaState.MISBEHAVING, answer.checked, answer.nbytes, [],
                       f"{type(exc).__name__}: {exc}")
    return answer


def audit_replica(chunk: ChunkRecord, peer: PeerAddress | None, *, file_id: bytes,
                  peer_id: str, keys: UserKeys, transport: Transport, clock: Clock,
                  randomness: Randomness, segments: int,
                  digest_alg: str = WHOLE_CHUNK_ALG) -> AuditResult:
    """Prove (or not) that ``peer`` holds ``chunk``: fetch ``segments`` random segments of
    it (``FULL_AUDIT``: all) under a fresh signed request and check each against the record
    (whose scheme is ``digest_alg``). Never raises for what the peer does; the result's
    state says it."""
    if not chunk.id_consistent(digest_alg):
        # Segments can't prove a chunk whose id its digests don't give (no receiver takes
        # such a header): nothing is fetched, and the chunk counts as lost here.
        return AuditResult(file_id, chunk.index, peer_id, ReplicaState.CORRUPT,
                           detail="the file record's chunk id does not match its segment "
                                  f"digests ({digest_alg})")
    if peer is None:
        return AuditResult(file_id, chunk.index, peer_id, ReplicaState.UNREACHABLE,
                           detail="no address known for this peer")
    wanted = sample_segments(len(chunk.segment_digests), max(1, segments), randomness)
    first = _ask(chunk, peer, wanted, keys=keys, transport=transport, clock=clock,
                 randomness=randomness, digest_alg=digest_alg)
    if first.state != ReplicaState.GOOD or not first.bad:
        return AuditResult(file_id, chunk.index, peer_id, first.state, first.checked,
                           first.nbytes, detail=first.detail)
    # Bad once: damaged on disk, or in transit? Ask for exactly those again, fresh nonce.
    again = _ask(chunk, peer, sorted(first.bad), keys=keys, transport=transport, clock=clock,
                 randomness=randomness, digest_alg=digest_alg)
    checked, nbytes = first.checked + again.checked, first.nbytes + again.nbytes
    if again.state != ReplicaState.GOOD:
        return AuditResult(file_id, chunk.index, peer_id, again.state, checked, nbytes,
                           detail=again.detail)
    if again.bad:
        return AuditResult(file_id, chunk.index, peer_id, ReplicaState.CORRUPT, checked, nbytes,
                           bad_segments=tuple(again.bad),
                           detail=f"segments {again.bad[:16]} fail their digest twice")
    return AuditResult(file_id, chunk.index, peer_id, ReplicaState.GOOD, checked, nbytes,
                       transient_bad=len(first.bad))


def probe_peers(peers: Mapping[str, PeerAddress], transport: Transport, *, timeout_s: float,
                executor: ExecutorFactory) -> dict[str, bool]:
    """Which of ``peers`` answer a ChunkStatus probe now (any answer at all counts)."""
    ids = sorted(peers)
    if not ids:
        return {}

    def up(peer_id: str) -> bool:
        try:
            transport.chunk_status(peers[peer_id], _PROBE_CHUNK_ID, timeout_s=timeout_s)
        except PeerUnavailable:
            return False
        except MydriveError:
            return True
        return True

    with executor(max_workers=min(16, len(ids)), name="probe") as pool:
        answers = list(pool.map(up, ids))
    return dict(zip(ids, answers, strict=True))


@dataclass
class Assessment:
    """Every replica of the files checked, as proven now; the audits that proved it."""

    files: list[FileHealth]
    totals: AuditTotals
    problems: list[AuditResult]          # audits that did not prove GOOD (bounded)
    peer_status: dict[str, PeerStatus]   # every peer probed, as the liveness book sees it
    audited: set[tuple[bytes, int, str]]  # (file id, chunk index, peer id) audited now


def assess(records: Sequence[FileRecord], *, peers: Mapping[str, PeerAddress],
           owner_peer_id: str | None, keys: UserKeys, transport: Transport, clock: Clock,
           randomness: Randomness, liveness: LivenessBook, depth: AuditDepth,
           grace_ms: int, min_failed_probes: int = 1, probe_timeout_s: float = 5.0,
           max_parallel_audits: int = 8, executor: ExecutorFactory = thread_pool,
           events: EventRecorder = NO_EVENTS) -> Assessment:
    """Probe every peer, audit the replicas ``depth`` asks for, and classify every replica
    and stray of ``records``. ``liveness`` is updated with what was seen (the caller keeps
    it); a replica not audited counts as ``UNAUDITED`` on a live peer, ``UNREACHABLE`` on a
    suspect one and ``DEAD`` on a dead one."""
    note = ClockedEvents(events, clock)
    involved = {p for p in peers if p != owner_peer_id}
    strays = {r.file_id: strays_of(r) for r in records}
    for record in records:
        for chunk in record.chunks:
            involved.update(chunk.replicas)
        involved.update(strays[record.file_id])
    known = {p: peers[p] for p in involved if p in peers}
    reach = probe_peers(known, transport, timeout_s=probe_timeout_s, executor=executor)
    jobs: list[tuple[FileRecord, ChunkRecord, str, int]] = []
    for record in records:
        for chunk in record.chunks:
            holders = [(p, False) for p in chunk.replicas]
            holders += [(p, True) for p, idx in sorted(strays[record.file_id].items())
                        if chunk.index in idx and p not in chunk.replicas]
            for peer_id, is_stray in holders:
                if not reach.get(peer_id, False):
                    continue
                segments = depth(record.file_id, chunk.index, peer_id, is_stray)
                if segments > 0:
                    jobs.append((record, chunk, peer_id, segments))
    totals = AuditTotals()

    def run(job: tuple[FileRecord, ChunkRecord, str, int]) -> AuditResult:
        record, chunk, peer_id, segments = job
        result = audit_replica(chunk, known.get(peer_id), file_id=record.file_id,
                               peer_id=peer_id, keys=keys, transport=transport, clock=clock,
                               randomness=randomness, segments=segments,
                               digest_alg=record.digest_alg)
        totals.add(result)
        note("audit.result", file_id=record.file_id.hex(), chunk=chunk.index, peer=peer_id,
             state=result.state.value, segments=result.segments_checked)
        return result

    results: dict[tuple[bytes, int, str], AuditResult] = {}
    if jobs:
        with executor(max_workers=max(1, min(max_parallel_audits, len(jobs))),
                      name="audit") as pool:
            for result in pool.map(run, jobs):
                results[(result.file_id, result.chunk_index, result.peer_id)] = result
    now_ms = clock.now_ms()
    # A peer that answers probes but not audits (unreachable, or refusing the owner's
    # signature: its clock, or a trick to keep its replicas listed) is not seen: after the
    # grace period it is dead like a silent one.
    unreachable_in_audit = {r.peer_id for r in results.values()
                            if r.state in (ReplicaState.UNREACHABLE, ReplicaState.REFUSED)}
    for peer_id in sorted(involved):
        seen = reach.get(peer_id, False) and peer_id not in unreachable_in_audit
        liveness.observe(peer_id, seen, now_ms)
    status = {p: liveness.status(p, now_ms, grace_ms=grace_ms,
                                 min_failed_probes=min_failed_probes) for p in sorted(involved)}
    for result in results.values():
        if result.state in (ReplicaState.MISSING, ReplicaState.CORRUPT,
                            ReplicaState.MISBEHAVING):
            liveness.blame(result.peer_id, now_ms)
    for peer_id, peer_status in status.items():
        if peer_status == PeerStatus.DEAD:
            liveness.blame(peer_id, now_ms)

    def state_of(file_id: bytes, index: int, peer_id: str) -> ReplicaState:
        result = results.get((file_id, index, peer_id))
        peer = status.get(peer_id, PeerStatus.SUSPECT)
        if result is not None and result.state not in (ReplicaState.UNREACHABLE,
                                                       ReplicaState.REFUSED):
            return result.state
        if peer == PeerStatus.DEAD:
            return ReplicaState.DEAD
        if result is not None:
            return result.state
        if peer == PeerStatus.SUSPECT:
            return ReplicaState.UNREACHABLE
        return ReplicaState.UNAUDITED

    files = []
    for record in records:
        chunks = []
        for chunk in record.chunks:
            replicas = tuple(ReplicaHealth(p, state_of(record.file_id, chunk.index, p))
                             for p in chunk.replicas)
            stray_health = tuple(
                ReplicaHealth(p, state_of(record.file_id, chunk.index, p))
                for p, idx in sorted(strays[record.file_id].items())
                if chunk.index in idx and p not in chunk.replicas)
            chunks.append(ChunkHealth(chunk.index, chunk.size_bytes, replicas, stray_health))
        files.append(FileHealth(record.file_id, tuple(chunks)))
    problems = [r for r in results.values() if r.state != ReplicaState.GOOD]
    return Assessment(files=files, totals=totals, problems=problems[:MAX_LISTED_PROBLEMS],
                      peer_status=status, audited=set(results))
