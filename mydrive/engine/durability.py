"""Durability for one owner: ``check`` (and its repair), and the background pass.

Both run in the owner's client process, because both need the owner's key: an audit is an
owner-signed fetch and a repair rewrites the owner's signed record (docs/durability.md says
what runs when no owner is online: nothing repairs then).

* ``run_check`` (``mydrive check``): probe every peer, audit every replica of the chosen
  files (a random sample of segments each, or all of them), and with ``repair`` restore each
  chunk to R (mydrive.engine.repair), optionally rebalancing onto preferred peers.
* ``run_pass`` (``mydrive durability run``, one tick of the loop): audits spread over time
  (the next ``audits_per_pass`` replicas after a cursor, plus every replica a download found
  serving bad segments, audited whole), dead-peer detection with a grace period, repairs and
  then rebalancing within a per-pass budget, paced to ``repair_bytes_per_s``.

The owner's peer keeps this user's durability state in the local (never replicated) metadata
document ``durability:<user id>``: the liveness book, the audit cursor, the suspects and
cumulative totals. It is written at the end of each check or pass, so a crash loses at most
the observations of the one it interrupted; the repairs themselves are crash-safe on their own
(mydrive.engine.repair).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from mydrive.crypto.keys import UserKeys
from mydrive.engine.check import (
    FULL_AUDIT,
    AuditDepth,
    AuditTotals,
    assess,
    strays_of,
)
from mydrive.engine.repair import (
    NO_REPAIR_HOOKS,
    Executed,
    Pacer,
    RepairHooks,
    RepairReport,
    execute_plan,
)
from mydrive.engine.repair_policy import (
    COUNTED,
    LOST,
    Candidate,
    FileHealth,
    LivenessBook,
    PeerStatus,
    RepairAction,
    RepairBudget,
    next_audits,
    plan_rebalance,
    plan_repairs,
)
from mydrive.engine.settings import TransferSettings
from mydrive.engine.upload import PeerInfo
from mydrive.formats.filerecord import FileRecord
from mydrive.metadata.base import MetadataStore
from mydrive.runtime.clock import Clock
from mydrive.runtime.events import NO_EVENTS, EventRecorder
from mydrive.runtime.executor import ExecutorFactory, thread_pool
from mydrive.runtime.metrics import Metrics
from mydrive.runtime.randomness import Randomness
from mydrive.transport.base import Transport

MiB = 1024 * 1024
STATE_PREFIX = "durability:"
STATE_VERSION = 1
MAX_SUSPECTS = 1024
UNLIMITED_BYTES = 1 << 62
TOTAL_KEYS = ("checks", "passes", "audits", "audit_segments", "audit_bytes", "audit_failures",
              "replicas_repaired", "replicas_adopted", "replicas_moved", "repair_failures",
              "repair_bytes_fetched", "repair_bytes_stored", "repair_bytes_verified",
              "strays_deleted")


@dataclass(frozen=True)
class DurabilitySettings:
    """Knobs of checks and of the background loop (docs/durability.md)."""

    dead_after_s: float = 3600.0     # unreachable this long (over probes) = dead: replace
    min_failed_probes: int = 3       # ... and at least this many unanswered probes
    audit_segments: int = 2          # segments per replica per audit (random each time)
    audits_per_pass: int = 256       # replicas audited per background pass
    pass_interval_s: float = 60.0    # between background passes
    repair_bytes_per_s: float | None = 8 * MiB  # fetched + stored, on average
    repair_bytes_per_pass: int = 512 * MiB
    repair_actions_per_pass: int = 4096
    rebalance_bytes_per_pass: int = 64 * MiB
    max_parallel_audits: int = 8
    max_plan_rounds: int = 3         # re-plans after a failed target, per check or pass
    distrust_s: float = 86400.0      # a peer that failed an audit or was dead: last choice


@dataclass
class DurabilityState:
    """This user's durability notes on the owner's peer (local document, JSON)."""

    liveness: LivenessBook = field(default_factory=LivenessBook)
    cursor: int = 0
    suspects: list[tuple[str, int, str]] = field(default_factory=list)  # file, chunk, peer
    totals: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOTAL_KEYS, 0))
    last_pass_ms: int = 0

    @staticmethod
    def key(user_id: str) -> str:
        return f"{STATE_PREFIX}{user_id}"

    @classmethod
    def load(cls, store: MetadataStore, user_id: str) -> DurabilityState:
        doc = store.get_local(cls.key(user_id)) or {}
        state = cls(liveness=LivenessBook.from_json(doc.get("liveness")))
        cursor = doc.get("cursor", 0)
        state.cursor = cursor if isinstance(cursor, int) and cursor >= 0 else 0
        for item in doc.get("suspects", [])[:MAX_SUSPECTS] \
                if isinstance(doc.get("suspects"), list) else []:
            if (isinstance(item, list) and len(item) == 3 and isinstance(item[0], str)
                    and isinstance(item[1], int) and isinstance(item[2], str)):
                state.suspects.append((item[0], item[1], item[2]))
        totals = doc.get("totals", {})
        for name in TOTAL_KEYS:
            value = totals.get(name, 0) if isinstance(totals, dict) else 0
            state.totals[name] = value if isinstance(value, int) and value >= 0 else 0
        last = doc.get("last_pass_ms", 0)
        state.last_pass_ms = last if isinstance(last, int) else 0
        return state

    def save(self, store: MetadataStore, user_id: str) -> None:
        store.put_local(self.key(user_id), {
            "version": STATE_VERSION, "liveness": self.liveness.to_json(),
            "cursor": self.cursor, "suspects": [list(s) for s in self.suspects],
            "totals": dict(self.totals), "last_pass_ms": self.last_pass_ms})

    def add_suspects(self, items: Sequence[tuple[str, int, str]]) -> None:
        """Replicas a download found serving bad segments: audited whole next time."""
        for item in items:
            if item not in self.suspects:
                self.suspects.append(item)
        del self.suspects[:max(0, len(self.suspects) - MAX_SUSPECTS)]


def describe_durability_metrics(metrics: Metrics) -> None:
    metrics.describe("durability_audits_total", "replica audits, by what they proved")
    metrics.describe("durability_audit_segments_total", "segments fetched by audits")
    metrics.describe("durability_audit_bytes_total", "bytes fetched by audits")
    metrics.describe("durability_repairs_total", "replicas added (replicate, adopt) or moved")
    metrics.describe("durability_repair_failures_total", "new replicas that did not make it")
    metrics.describe("durability_repair_bytes_total", "bytes moved by repairs, by direction")
    metrics.describe("durability_strays_deleted_total", "retired or unneeded copies deleted")
    metrics.describe("durability_passes_total", "checks and background passes run")


@dataclass
class FileCheck:
    """One file in a check: its record and health before, and after any repair."""

    path: str
    record: FileRecord
    before: FileHealth
    after: FileHealth | None = None

    def to_json(self, replicas: int) -> dict[str, Any]:
        doc = {"path": self.path, "file_id": self.record.file_id.hex(),
               "chunk_count": self.record.plan.chunk_count,
               **_health_json(self.before, self.record, replicas)}
        if self.after is not None:
            doc["after"] = _health_json(self.after, self.record, replicas)
        return doc


def _health_json(health: FileHealth, record: FileRecord, replicas: int) -> dict[str, Any]:
    ids = {c.index: c.chunk_id.hex() for c in record.chunks}
    return {
        "healthy": all(len(c.counted()) >= replicas for c in health.chunks),
        "chunks": [{"index": c.index, "chunk_id": ids.get(c.index, ""),
                    "counted": len(c.counted()),
                    "replicas": [{"peer": r.peer_id, "state": r.state.value}
                                 for r in c.replicas],
                    "strays": [{"peer": r.peer_id, "state": r.state.value}
                               for r in c.strays]} for c in health.chunks],
        "lost": [{"chunk": c.index, "peer": r.peer_id, "state": r.state.value}
                 for c in health.chunks for r in c.replicas if r.state in LOST],
    }


def summarize(files: Sequence[FileHealth], replicas: int) -> dict[str, int]:
    """Counts over ``files``: replicas by state, chunks below R, chunks with none counted."""
    out = {"files": len(files), "chunks": 0, "replicas": 0, "chunks_below_r": 0,
           "chunks_without_replica": 0, "files_healthy": 0}
    for state in ("good", "unaudited", "missing", "corrupt", "misbehaving", "unreachable",
                  "refused", "dead"):
        out[state] = 0
    for health in files:
        healthy = True
        for chunk in health.chunks:
            out["chunks"] += 1
            for r in chunk.replicas:
                out["replicas"] += 1
                out[r.state.value] += 1
            counted = len(chunk.counted())
            if counted < replicas:
                out["chunks_below_r"] += 1
                healthy = False
            if counted == 0:
                out["chunks_without_replica"] += 1
        out["files_healthy"] += healthy
    return out


@dataclass
class CheckReport:
    """What a check (or a background pass) found and did."""

    replicas: int
    files: list[FileCheck]
    audits: AuditTotals
    peer_status: dict[str, PeerStatus]
    repair: RepairReport | None = None
    totals: dict[str, int] = field(default_factory=dict)

    def summary(self, *, after: bool = False) -> dict[str, int]:
        health = [f.after if after and f.after is not None else f.before for f in self.files]
        return summarize(health, self.replicas)

    @property
    def healthy(self) -> bool:
        return self.summary(after=self.repair is not None)["chunks_below_r"] == 0

    @property
    def unavailable(self) -> bool:
        """Some chunk has no replica that counts (not downloadable now)."""
        return self.summary(after=self.repair is not None)["chunks_without_replica"] > 0

    def to_json(self) -> dict[str, Any]:
        repair = self.repair
        return {"replicas_wanted": self.replicas, "healthy": self.healthy,
                "files": [f.to_json(self.replicas) for f in self.files],
                "summary": self.summary(),
                "after": self.summary(after=True) if repair is not None else None,
                "audits": self.audits.to_json(),
                "repair": repair.to_json() if repair is not None else None,
                "transfer": repair.ledger.to_json() if repair is not None else {},
                "peers": {p: s.value for p, s in sorted(self.peer_status.items())},
                "totals": dict(self.totals)}


@dataclass
class _Run:
    """Everything one check or pass is handed."""

    keys: UserKeys
    store: MetadataStore
    peers: Sequence[PeerInfo]
    owner_peer_id: str | None
    transport: Transport
    clock: Clock
    randomness: Randomness
    executor: ExecutorFactory
    events: EventRecorder
    transfer: TransferSettings
    settings: DurabilitySettings
    hooks: RepairHooks
    metrics: Metrics | None


def run_check(files: Sequence[tuple[str, FileRecord]], *, keys: UserKeys,
              store: MetadataStore, peers: Sequence[PeerInfo], owner_peer_id: str | None,
              transport: Transport, clock: Clock, randomness: Randomness,
              transfer: TransferSettings, settings: DurabilitySettings = DurabilitySettings(),
              verify_all: bool = False, repair: bool = False, rebalance: bool = False,
              budget: RepairBudget | None = None, max_bytes_per_s: float | None = None,
              executor: ExecutorFactory = thread_pool,
              events: EventRecorder = NO_EVENTS, hooks: RepairHooks = NO_REPAIR_HOOKS,
              metrics: Metrics | None = None) -> CheckReport:
    """Audit every replica of ``files`` ((path, verified record) pairs); with ``repair``
    restore every chunk to R (within ``budget``, unlimited by default, at most
    ``max_bytes_per_s`` moved), with ``rebalance`` also move replicas onto the peers the
    placement now prefers."""
    run = _Run(keys, store, peers, owner_peer_id, transport, clock, randomness, executor,
               events, transfer, settings, hooks, metrics)
    state = DurabilityState.load(store, keys.user_id)
    suspects = set(state.suspects)
    depth_all = FULL_AUDIT if verify_all else settings.audit_segments

    def depth(file_id: bytes, index: int, peer_id: str, is_stray: bool) -> int:
        if (file_id.hex(), index, peer_id) in suspects:
            return FULL_AUDIT
        return settings.audit_segments if is_stray else depth_all

    report = _run(run, state, files, depth, repair=repair, rebalance=rebalance,
                  budget=budget or RepairBudget(UNLIMITED_BYTES, 1 << 30),
                  pacer_rate=max_bytes_per_s)
    state.totals["checks"] += 1
    state.save(store, keys.user_id)
    report.totals = dict(state.totals)
    return report


def run_pass(records: Sequence[FileRecord], *, keys: UserKeys, store: MetadataStore,
             peers: Sequence[PeerInfo], owner_peer_id: str | None, transport: Transport,
             clock: Clock, randomness: Randomness, transfer: TransferSettings,
             settings: DurabilitySettings = DurabilitySettings(),
             executor: ExecutorFactory = thread_pool, events: EventRecorder = NO_EVENTS,
             hooks: RepairHooks = NO_REPAIR_HOOKS,
             metrics: Metrics | None = None) -> CheckReport:
    """One background pass over this user's files (docs/durability.md, "The loop")."""
    run = _Run(keys, store, peers, owner_peer_id, transport, clock, randomness, executor,
               events, transfer, settings, hooks, metrics)
    state = DurabilityState.load(store, keys.user_id)
    ordered = sorted(records, key=lambda r: r.file_id)
    replica_keys = [(r.file_id.hex(), c.index, p) for r in ordered for c in r.chunks
                    for p in c.replicas]
    batch, state.cursor = next_audits(replica_keys, state.cursor, settings.audits_per_pass)
    chosen = set(batch)
    suspects = set(state.suspects)

    def depth(file_id: bytes, index: int, peer_id: str, is_stray: bool) -> int:
        key = (file_id.hex(), index, peer_id)
        if key in suspects:
            return FULL_AUDIT
        if is_stray or key in chosen:
            return settings.audit_segments
        return 0

    report = _run(run, state, [("", r) for r in ordered], depth, repair=True, rebalance=True,
                  budget=RepairBudget(settings.repair_bytes_per_pass,
                                      settings.repair_actions_per_pass),
                  pacer_rate=settings.repair_bytes_per_s)
    state.totals["passes"] += 1
    state.last_pass_ms = clock.now_ms()
    state.save(store, keys.user_id)
    report.totals = dict(state.totals)
    return report


def _run(run: _Run, state: DurabilityState, files: Sequence[tuple[str, FileRecord]],
         depth: AuditDepth, *, repair: bool, rebalance: bool, budget: RepairBudget,
         pacer_rate: float | None) -> CheckReport:
    settings = run.settings
    records = [r for _, r in files]
    addresses = {p.peer_id: p.address for p in run.peers}
    assessment = assess(records, peers=addresses, owner_peer_id=run.owner_peer_id,
                        keys=run.keys, transport=run.transport, clock=run.clock,
                        randomness=run.randomness, liveness=state.liveness, depth=depth,
                        grace_ms=round(settings.dead_after_s * 1000),
                        min_failed_probes=settings.min_failed_probes,
                        probe_timeout_s=run.transfer.probe_timeout_s,
                        max_parallel_audits=settings.max_parallel_audits,
                        executor=run.executor, events=run.events)
    state.liveness.keep_only(set(addresses) | set(assessment.peer_status))
    state.suspects = [s for s in state.suspects
                      if (bytes.fromhex(s[0]), s[1], s[2]) not in assessment.audited]
    checks = [FileCheck(path, record, health)
              for (path, record), health in zip(files, assessment.files, strict=True)]
    report = CheckReport(replicas=run.transfer.replicas, files=checks,
                         audits=assessment.totals, peer_status=assessment.peer_status)
    if repair:
        avoid = state.liveness.distrusted(run.clock.now_ms(),
                                          window_ms=round(settings.distrust_s * 1000))
        report.repair = _repair(run, assessment.peer_status, checks, budget=budget,
                                rebalance=rebalance, pacer=Pacer(run.clock, pacer_rate),
                                avoid=avoid)
    _count(run, state, report)
    return report


def _repair(run: _Run, status: dict[str, PeerStatus], checks: list[FileCheck], *,
            budget: RepairBudget, rebalance: bool, pacer: Pacer,
            avoid: frozenset[str]) -> RepairReport:
    report = RepairReport()
    live = frozenset(p for p, s in status.items() if s == PeerStatus.LIVE)
    candidates = [Candidate(p.peer_id, p.capacity_bytes, p.peer_id in live)
                  for p in run.peers]
    records = {c.record.file_id: c.record for c in checks}
    health = {c.record.file_id: c.before for c in checks}
    excluded: set[str] = set()
    spent_bytes = spent_actions = 0
    repaired = False
    clean = [fid for fid, r in records.items() if strays_of(r)]
    for _ in range(run.settings.max_plan_rounds):
        left = RepairBudget(max(0, budget.max_bytes - spent_bytes),
                            max(0, budget.max_actions - spent_actions))
        plan = plan_repairs(list(health.values()), candidates, replicas=run.transfer.replicas,
                            owner_peer_id=run.owner_peer_id, budget=left,
                            exclude=frozenset(excluded), avoid=avoid)
        report.deferred, report.unplaceable = plan.deferred, list(plan.unplaceable)
        repaired = repaired or bool(plan.actions)
        if not plan.actions and not clean:
            break
        cleared = report.strays_cleared
        done = _execute(run, plan.actions, records, health, live, pacer, report, clean)
        clean = []
        spent_bytes += plan.total_bytes
        spent_actions += len(plan.actions)
        # Plan again when a target failed (without it), or when copies that blocked a
        # placement were just cleared away.
        failed = done.failed_targets - excluded
        room = plan.unplaceable or plan.waiting_for_room
        if not failed and not (room and report.strays_cleared > cleared):
            break
        excluded |= failed
    # Rebalancing is the lowest priority: only in a pass that had nothing to repair, and
    # never onto a peer that failed an audit or was dead lately.
    if rebalance and not repaired and report.deferred == 0 and not report.unplaceable:
        plan = plan_rebalance(list(health.values()), candidates,
                              replicas=run.transfer.replicas, owner_peer_id=run.owner_peer_id,
                              budget=RepairBudget(run.settings.rebalance_bytes_per_pass, 1 << 30),
                              exclude=frozenset(excluded) | avoid)
        if plan.actions:
            _execute(run, plan.actions, records, health, live, pacer, report, [])
    for check in checks:
        check.record = records[check.record.file_id]
        check.after = health[check.record.file_id]
    return report


def _execute(run: _Run, actions: Sequence[RepairAction], records: dict[bytes, FileRecord],
             health: dict[bytes, FileHealth], live: frozenset[str], pacer: Pacer,
             report: RepairReport, clean: Sequence[bytes]) -> Executed:
    done = execute_plan(actions, records, health, keys=run.keys, store=run.store,
                        peers={p.peer_id: p.address for p in run.peers}, reachable=live,
                        transport=run.transport, clock=run.clock, randomness=run.randomness,
                        settings=run.transfer, verify_segments=run.settings.audit_segments,
                        pacer=pacer, report=report, hooks=run.hooks, events=run.events,
                        clean_files=clean)
    records.update(done.records)
    health.update(done.health)
    return done


def _count(run: _Run, state: DurabilityState, report: CheckReport) -> None:
    """Add what this check or pass did to the cumulative totals and the metrics."""
    audits = report.audits.to_json()
    failures = sum(n for s, n in audits["by_state"].items() if s != "good")
    t = state.totals
    t["audits"] += audits["replicas"]
    t["audit_segments"] += audits["segments"]
    t["audit_bytes"] += audits["bytes"]
    t["audit_failures"] += failures
    repair = report.repair
    if repair is not None:
        t["replicas_repaired"] += repair.replicated
        t["replicas_adopted"] += repair.adopted
        t["replicas_moved"] += repair.moved
        t["repair_failures"] += repair.failed
        t["repair_bytes_fetched"] += repair.bytes_fetched
        t["repair_bytes_stored"] += repair.bytes_stored
        t["repair_bytes_verified"] += repair.bytes_verified
        t["strays_deleted"] += repair.strays_deleted
    m = run.metrics
    if m is None:
        return
    m.inc("durability_passes_total")
    for state_name, n in audits["by_state"].items():
        m.inc("durability_audits_total", n, state=state_name)
    m.inc("durability_audit_segments_total", audits["segments"])
    m.inc("durability_audit_bytes_total", audits["bytes"])
    if repair is not None:
        m.inc("durability_repairs_total", repair.replicated, kind="replicate")
        m.inc("durability_repairs_total", repair.adopted, kind="adopt")
        m.inc("durability_repairs_total", repair.moved, kind="move")
        m.inc("durability_repair_failures_total", repair.failed)
        m.inc("durability_repair_bytes_total", repair.bytes_fetched, direction="fetched")
        m.inc("durability_repair_bytes_total", repair.bytes_stored, direction="stored")
        m.inc("durability_repair_bytes_total", repair.bytes_verified, direction="verified")
        m.inc("durability_strays_deleted_total", repair.strays_deleted)


def counted(health: FileHealth) -> list[int]:
    """Counted replicas per chunk (a test and report helper)."""
    return [sum(1 for r in c.replicas if r.state in COUNTED) for c in health.chunks]
