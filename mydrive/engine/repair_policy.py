"""The repair policy: which chunks need a new replica, where it goes, and how much per pass.

Pure: no I/O, no clock, no randomness; every input is plain data, so the engine
(mydrive.engine.repair), the owner's background loop (mydrive.engine.durability) and the
simulator (fleet-level durability with and without repair) all call the same code.
docs/durability.md explains the rules; in short:

* A replica counts towards R when an audit just proved the peer holds it (``GOOD``) or its
  peer is live and it was not audited this pass (``UNAUDITED``). A replica that is
  ``MISSING`` (the peer says it has no such chunk), ``CORRUPT`` (it served segments that fail
  their digest twice), ``MISBEHAVING`` (it broke the protocol) or ``DEAD`` (its peer has been
  unreachable longer than the grace period) is lost and gets replaced. An ``UNREACHABLE`` or
  ``REFUSED`` one is waited for: a flapping peer is not dead.
* A new replica goes to the first peer of the placement's own ranking for that chunk
  (capacity-weighted rendezvous, ``formats.placement.rank_peers``) that is live, not the
  owner's, does not hold the chunk already, and would still hold fewer than all of the
  file's chunks, counting copies outside the record (``strays``: a replica being added, or
  one retired but not yet deleted). Peers that failed an audit or were dead lately come
  last, and a peer that said it lost this very chunk comes after them (storing it there
  again adds nothing to what it was counted as holding). A stray that an audit proved good
  is adopted first: no bytes move.
* The most endangered chunks go first (fewest counted replicas), and a pass stops at its
  budget (bytes and actions); the rest is ``deferred`` to the next pass. The first action of
  a pass is always allowed, so a chunk larger than the budget still gets repaired.
* Rebalancing moves a healthy replica to a peer the ranking now prefers (a new peer), one
  chunk at a time within its own budget; it never runs on a chunk that needs repair.

Nothing here is kept anywhere: the caller persists the ``LivenessBook`` (as JSON) and the
audit cursor, so a crash loses at most the observations of the pass it interrupted.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, TypeVar

from mydrive.formats.placement import PeerSlot, rank_peers

T = TypeVar("T")

MAX_TRACKED_PEERS = 4096     # liveness entries kept; the oldest-seen are forgotten first
MAX_FLAPS_COUNTED = 1_000_000
MAX_UNPLACEABLE_LISTED = 1000


class ReplicaState(StrEnum):
    GOOD = "good"                # an audit just proved the peer holds the sampled segments
    UNAUDITED = "unaudited"      # its peer is live; not audited in this pass
    MISSING = "missing"          # the peer answered that it holds no such chunk
    CORRUPT = "corrupt"          # it served segments failing their digest, twice
    MISBEHAVING = "misbehaving"  # it answered the audit in a way no honest peer does
    UNREACHABLE = "unreachable"  # no answer; its peer is not dead (yet): wait
    REFUSED = "refused"          # it refused the owner's signature (its clock?): wait
    DEAD = "dead"                # its peer has been unreachable longer than the grace period


COUNTED = frozenset({ReplicaState.GOOD, ReplicaState.UNAUDITED})
LOST = frozenset({ReplicaState.MISSING, ReplicaState.CORRUPT, ReplicaState.MISBEHAVING,
                  ReplicaState.DEAD})
WAITING = frozenset({ReplicaState.UNREACHABLE, ReplicaState.REFUSED})


@dataclass(frozen=True)
class ReplicaHealth:
    peer_id: str
    state: ReplicaState


@dataclass(frozen=True)
class ChunkHealth:
    """One chunk as the owner found it: its record's replicas and any copies outside it."""

    index: int
    size_bytes: int
    replicas: tuple[ReplicaHealth, ...]   # the record's replicas, in record order
    strays: tuple[ReplicaHealth, ...] = ()  # copies outside the record (UNAUDITED: unknown)

    def counted(self) -> list[str]:
        """Peers counting towards R, proven ones first (the sources a repair copies from)."""
        good = [r.peer_id for r in self.replicas if r.state == ReplicaState.GOOD]
        return good + [r.peer_id for r in self.replicas if r.state == ReplicaState.UNAUDITED]

    def waiting(self) -> list[str]:
        return [r.peer_id for r in self.replicas if r.state in WAITING]

    def lost(self) -> list[str]:
        return [r.peer_id for r in self.replicas if r.state in LOST]

    def may_hold(self) -> set[str]:
        """Every peer that may hold a copy: the record's replicas and the strays, whatever
        their state (a peer that says it lost a chunk is taken at its word only once a
        delete has crossed it off)."""
        return {r.peer_id for r in (*self.replicas, *self.strays)}


@dataclass(frozen=True)
class FileHealth:
    file_id: bytes
    chunks: tuple[ChunkHealth, ...]

    @property
    def chunk_count(self) -> int:
        return len(self.chunks)


@dataclass(frozen=True)
class Candidate:
    """A peer a replica could go to; its capacity weights the ranking, as in placement."""

    peer_id: str
    capacity_bytes: int
    live: bool = True


@dataclass(frozen=True)
class RepairBudget:
    """What one pass may move. The first action always fits (a large chunk still moves)."""

    max_bytes: int
    max_actions: int

    def allows(self, spent_bytes: int, actions: int, size_bytes: int) -> bool:
        if actions == 0:
            return self.max_actions > 0
        return actions < self.max_actions and spent_bytes + size_bytes <= self.max_bytes


class ActionKind(StrEnum):
    REPLICATE = "replicate"  # copy the chunk from a counted replica to a new peer
    ADOPT = "adopt"          # a stray proved it holds the chunk: list it, move nothing
    MOVE = "move"            # rebalance: copy to a preferred peer, then retire one replica


@dataclass(frozen=True)
class RepairAction:
    kind: ActionKind
    file_id: bytes
    chunk_index: int
    target: str
    sources: tuple[str, ...]  # counted replicas to copy from, proven ones first (not ADOPT)
    size_bytes: int           # bytes to fetch and to store (0 for ADOPT)
    drop: tuple[str, ...]     # record replicas this action retires once it has committed

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "file_id": self.file_id.hex(),
                "chunk": self.chunk_index, "target": self.target,
                "sources": list(self.sources), "size_bytes": self.size_bytes,
                "drop": list(self.drop)}


@dataclass(frozen=True)
class Unplaceable:
    file_id: bytes
    chunk_index: int
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"file_id": self.file_id.hex(), "chunk": self.chunk_index,
                "reason": self.reason}


@dataclass(frozen=True)
class RepairPlan:
    actions: tuple[RepairAction, ...] = ()
    deferred: int = 0  # replicas needed but left to a later pass by the budget
    unplaceable: tuple[Unplaceable, ...] = ()  # no counted source, or no eligible peer now
    waiting_for_room: int = 0  # replicas placeable once this plan's moves are cleaned up

    @property
    def total_bytes(self) -> int:
        return sum(a.size_bytes for a in self.actions)

    def for_file(self, file_id: bytes) -> list[RepairAction]:
        return [a for a in self.actions if a.file_id == file_id]


@dataclass
class _Holdings:
    """Which chunks of one file each peer may hold (record and strays), while planning."""

    chunk_count: int
    by_peer: dict[str, set[int]] = field(default_factory=dict)

    @classmethod
    def of(cls, health: FileHealth) -> _Holdings:
        holdings = cls(health.chunk_count)
        for chunk in health.chunks:
            for peer_id in chunk.may_hold():
                holdings.by_peer.setdefault(peer_id, set()).add(chunk.index)
        return holdings

    def may_add(self, peer_id: str, index: int) -> bool:
        """False if ``peer_id`` would then hold every chunk of the file."""
        held = self.by_peer.get(peer_id, set())
        return len(held | {index}) <= self.chunk_count - 1

    def add(self, peer_id: str, index: int) -> None:
        self.by_peer.setdefault(peer_id, set()).add(index)


def _slots(peers: Iterable[Candidate], owner_peer_id: str | None,
           exclude: frozenset[str]) -> list[PeerSlot]:
    return [PeerSlot(peer_id=p.peer_id, capacity_bytes=p.capacity_bytes,
                     free_bytes=p.capacity_bytes)
            for p in peers
            if p.live and p.peer_id != owner_peer_id and p.peer_id not in exclude]


def replicas_needed(chunk: ChunkHealth, replicas: int) -> int:
    """How many new replicas the chunk needs now: lost ones are replaced, waiting ones not."""
    return max(0, replicas - len(chunk.counted()) - len(chunk.waiting()))


def plan_repairs(files: Sequence[FileHealth], peers: Sequence[Candidate], *, replicas: int,
                 owner_peer_id: str | None, budget: RepairBudget,
                 exclude: frozenset[str] = frozenset(),
                 avoid: frozenset[str] = frozenset()) -> RepairPlan:
    """The replicas to add this pass, most endangered chunks first, within ``budget``.

    ``exclude``: peers not to use as targets or adopt from (they failed earlier in the
    pass). ``avoid``: peers used as targets only when no other can take the replica (they
    failed an audit lately, or were dead).

    When every live peer that lacks a chunk already holds all the file's other chunks it may
    hold (few peers left), one of this pass's own copies of another chunk is sent elsewhere
    to free such a peer; failing that, an existing replica of another chunk is moved off it
    (a ``MOVE`` now) and the chunk waits for the next round (``waiting_for_room``): the
    moved copy must be deleted before that peer may take the chunk, or it would hold them all.
    """
    assert replicas >= 1
    live = {p.peer_id for p in peers if p.live}
    slots = _slots(peers, owner_peer_id, exclude)
    needs: list[tuple[int, bytes, int, FileHealth, ChunkHealth]] = []
    for health in files:
        for chunk in health.chunks:
            if replicas_needed(chunk, replicas) > 0:
                needs.append((len(chunk.counted()), health.file_id, chunk.index, health, chunk))
    needs.sort(key=lambda n: (n[0], n[1], n[2]))
    plans: dict[bytes, _FilePlan] = {}
    actions: list[RepairAction] = []
    unplaceable: list[Unplaceable] = []
    spent = deferred = waiting = 0
    for _, file_id, index, health, chunk in needs:
        need = replicas_needed(chunk, replicas)
        sources = tuple(chunk.counted())
        drop = tuple(chunk.lost())
        if not sources:
            _note(unplaceable, Unplaceable(file_id, index, "no replica left to copy from"))
            continue
        plan = plans.setdefault(file_id, _FilePlan(health, slots, avoid, actions))
        over_budget = False
        for stray in chunk.strays:
            if need and stray.state == ReplicaState.GOOD and stray.peer_id in live \
                    and stray.peer_id not in exclude and stray.peer_id != owner_peer_id:
                if not budget.allows(spent, len(actions), 0):
                    over_budget = True
                    break
                actions.append(RepairAction(ActionKind.ADOPT, file_id, index, stray.peer_id,
                                            (), 0, drop))
                need -= 1
        while need and not over_budget:
            if not budget.allows(spent, len(actions), chunk.size_bytes):
                over_budget = True
                break
            target = plan.free_target(index) or plan.retarget_for(index)
            if target is None:
                break
            actions.append(RepairAction(ActionKind.REPLICATE, file_id, index, target, sources,
                                        chunk.size_bytes, drop))
            spent += chunk.size_bytes
            plan.held.add(target, index)
            need -= 1
        if need and over_budget:
            deferred += need
        elif need:
            move = plan.make_room_for(index)
            if move is not None and budget.allows(spent, len(actions), move.size_bytes):
                actions.append(move)
                spent += move.size_bytes
                plan.held.add(move.target, move.chunk_index)
                waiting += need
            else:
                _note(unplaceable, Unplaceable(
                    file_id, index, f"no eligible peer for {need} more replica(s): every "
                    f"live peer holds it already or would then hold all "
                    f"{health.chunk_count} chunks"))
    return RepairPlan(tuple(actions), deferred, tuple(unplaceable), waiting)


class _FilePlan:
    """One file's holdings while a pass is planned, and its ways of finding room."""

    def __init__(self, health: FileHealth, slots: list[PeerSlot], avoid: frozenset[str],
                 actions: list[RepairAction]) -> None:
        self.health = health
        self.slots = slots
        self.avoid = avoid
        self.actions = actions  # the pass's list (shared): this file's entries are edited
        self.held = _Holdings.of(health)
        self.chunks = {c.index: c for c in health.chunks}

    def lost_here(self, index: int) -> set[str]:
        """Peers that said they lost chunk ``index``."""
        return {r.peer_id for r in self.chunks[index].replicas
                if r.state == ReplicaState.MISSING}

    def order(self, index: int) -> list[str]:
        """Live candidates for chunk ``index``: by rank, distrusted ones later, a peer that
        said it lost this very chunk last (giving it back adds nothing it is not counted
        as holding already)."""
        lost_here = self.lost_here(index)
        ranking = rank_peers(self.health.file_id, index, self.slots)
        return ([p for p in ranking if p not in self.avoid and p not in lost_here]
                + [p for p in ranking if p in self.avoid and p not in lost_here]
                + [p for p in ranking if p in lost_here])

    def taken(self, index: int) -> set[str]:
        """Peers that hold (or may hold, or are planned to get) chunk ``index``."""
        planned = {a.target for a in self.actions
                   if a.file_id == self.health.file_id and a.chunk_index == index}
        return (self.chunks[index].may_hold() - self.lost_here(index)) | planned

    def free_target(self, index: int, *, besides: str | None = None) -> str | None:
        taken = self.taken(index)
        for peer_id in self.order(index):
            if peer_id != besides and peer_id not in taken \
                    and self.held.may_add(peer_id, index):
                return peer_id
        return None

    def retarget_for(self, index: int) -> str | None:
        """Free a full peer by sending one of this pass's copies of another chunk to
        another peer; the freed peer, or None."""
        taken = self.taken(index)
        for peer_id in self.order(index):
            if peer_id in taken:
                continue
            for k, action in enumerate(self.actions):
                if (action.file_id != self.health.file_id or action.target != peer_id
                        or action.kind != ActionKind.REPLICATE or action.chunk_index == index):
                    continue
                other = self.free_target(action.chunk_index, besides=peer_id)
                if other is None:
                    continue
                self.actions[k] = RepairAction(action.kind, action.file_id,
                                               action.chunk_index, other, action.sources,
                                               action.size_bytes, action.drop)
                self.held.by_peer[peer_id].discard(action.chunk_index)
                self.held.add(other, action.chunk_index)
                if self.held.may_add(peer_id, index):
                    return peer_id
        return None

    def make_room_for(self, index: int) -> RepairAction | None:
        """A move of another chunk's counted replica off a full peer that lacks ``index``."""
        taken = self.taken(index)
        for peer_id in self.order(index):
            if peer_id in taken:
                continue
            for other_index in sorted(self.held.by_peer.get(peer_id, set()) - {index}):
                other = self.chunks[other_index]
                if peer_id not in other.counted():
                    continue  # only a proven (or live, unaudited) replica is moved
                target = self.free_target(other_index, besides=peer_id)
                if target is not None:
                    return RepairAction(ActionKind.MOVE, self.health.file_id, other_index,
                                        target, tuple(other.counted()), other.size_bytes,
                                        (peer_id,))
        return None


def plan_rebalance(files: Sequence[FileHealth], peers: Sequence[Candidate], *, replicas: int,
                   owner_peer_id: str | None, budget: RepairBudget,
                   exclude: frozenset[str] = frozenset()) -> RepairPlan:
    """Moves of healthy replicas onto peers the ranking now prefers (e.g. a new peer).

    Only chunks with exactly R counted replicas, none lost or waiting and no strays move;
    each move copies first and retires the old replica only once the new one committed, so a
    chunk never has fewer than R. Every move goes to a better-ranked peer, so repeated passes
    over one peer set end.
    """
    slots = _slots(peers, owner_peer_id, exclude)
    actions: list[RepairAction] = []
    spent = 0
    for health in sorted(files, key=lambda f: f.file_id):
        held = _Holdings.of(health)
        for chunk in health.chunks:
            current = chunk.counted()
            if (len(current) != replicas or len(chunk.replicas) != replicas
                    or chunk.strays):
                continue
            ranking = rank_peers(health.file_id, chunk.index, slots)
            ideal = ranking[:replicas]
            position = {p: i for i, p in enumerate(ranking)}
            incoming = [p for p in ideal if p not in current]
            outgoing = sorted((p for p in current if p not in ideal),
                              key=lambda p: -position.get(p, len(ranking)))
            for target, source in zip(incoming, outgoing, strict=False):
                if not held.may_add(target, chunk.index):
                    continue
                if not budget.allows(spent, len(actions), chunk.size_bytes):
                    return RepairPlan(tuple(actions))
                actions.append(RepairAction(ActionKind.MOVE, health.file_id, chunk.index,
                                            target, tuple(current), chunk.size_bytes,
                                            (source,)))
                spent += chunk.size_bytes
                held.add(target, chunk.index)
                break  # one move per chunk and pass
    return RepairPlan(tuple(actions))


def _note(items: list[Unplaceable], item: Unplaceable) -> None:
    if len(items) < MAX_UNPLACEABLE_LISTED:
        items.append(item)


# ---- dead-peer detection ---------------------------------------------------------------
class PeerStatus(StrEnum):
    LIVE = "live"        # answered the last probe
    SUSPECT = "suspect"  # not answering, for less than the grace period (or too few probes)
    DEAD = "dead"        # not answering for the whole grace period, over several probes


@dataclass
class PeerLiveness:
    last_seen_ms: int | None = None     # last probe it answered
    down_since_ms: int | None = None    # first unanswered probe since it last answered
    failed_probes: int = 0              # unanswered probes since it last answered
    flaps: int = 0                      # times it came back after being down
    last_blamed_ms: int | None = None   # last failed audit, or last time it was found dead


@dataclass
class LivenessBook:
    """What the owner's probes saw of each peer; a peer is dead only after ``grace_ms`` of
    unanswered probes (at least ``min_failed_probes`` of them), so a peer that comes back
    now and then is never declared dead, and an owner away for a week does not declare
    everyone dead with its first probe back."""

    peers: dict[str, PeerLiveness] = field(default_factory=dict)

    def observe(self, peer_id: str, reachable: bool, now_ms: int) -> None:
        entry = self.peers.get(peer_id)
        if entry is None:
            if len(self.peers) >= MAX_TRACKED_PEERS:
                self._forget_oldest()
            entry = self.peers[peer_id] = PeerLiveness()
        if reachable:
            if entry.down_since_ms is not None:
                entry.flaps = min(entry.flaps + 1, MAX_FLAPS_COUNTED)
            entry.last_seen_ms = now_ms
            entry.down_since_ms = None
            entry.failed_probes = 0
        else:
            if entry.down_since_ms is None:
                entry.down_since_ms = now_ms
            entry.failed_probes = min(entry.failed_probes + 1, MAX_FLAPS_COUNTED)

    def status(self, peer_id: str, now_ms: int, *, grace_ms: int,
               min_failed_probes: int = 1) -> PeerStatus:
        entry = self.peers.get(peer_id)
        if entry is None:
            return PeerStatus.SUSPECT
        if entry.down_since_ms is None:
            return PeerStatus.LIVE
        if now_ms - entry.down_since_ms >= grace_ms and \
                entry.failed_probes >= min_failed_probes:
            return PeerStatus.DEAD
        return PeerStatus.SUSPECT

    def blame(self, peer_id: str, now_ms: int) -> None:
        """The peer failed an audit (or was found dead): distrusted for a while."""
        if peer_id not in self.peers:
            self.observe(peer_id, True, now_ms)
        self.peers[peer_id].last_blamed_ms = now_ms

    def distrusted(self, now_ms: int, *, window_ms: int) -> frozenset[str]:
        """Peers blamed within ``window_ms``: a repair uses them only when no other peer
        can take a replica, a rebalance never."""
        return frozenset(p for p, e in self.peers.items()
                         if e.last_blamed_ms is not None
                         and now_ms - e.last_blamed_ms < window_ms)

    def _forget_oldest(self) -> None:
        oldest = min(self.peers, key=lambda p: (self.peers[p].last_seen_ms or 0, p))
        del self.peers[oldest]

    def keep_only(self, peer_ids: Iterable[str]) -> None:
        keep = set(peer_ids)
        for peer_id in [p for p in self.peers if p not in keep]:
            del self.peers[peer_id]

    def to_json(self) -> dict[str, Any]:
        return {p: {"last_seen_ms": e.last_seen_ms, "down_since_ms": e.down_since_ms,
                    "failed_probes": e.failed_probes, "flaps": e.flaps,
                    "last_blamed_ms": e.last_blamed_ms}
                for p, e in sorted(self.peers.items())}

    @classmethod
    def from_json(cls, doc: object) -> LivenessBook:
        """Our own local note; anything malformed is dropped (observations start again)."""
        book = cls()
        if not isinstance(doc, Mapping):
            return book
        for peer_id, raw in list(doc.items())[:MAX_TRACKED_PEERS]:
            try:
                book.peers[str(peer_id)] = PeerLiveness(
                    last_seen_ms=_opt_int(raw.get("last_seen_ms")),
                    down_since_ms=_opt_int(raw.get("down_since_ms")),
                    failed_probes=int(raw.get("failed_probes", 0)),
                    flaps=int(raw.get("flaps", 0)),
                    last_blamed_ms=_opt_int(raw.get("last_blamed_ms")))
            except (AttributeError, TypeError, ValueError):
                continue
        return book


def _opt_int(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not an integer")
    return value


# ---- audits spread over time -----------------------------------------------------------
def next_audits(keys: Sequence[T], cursor: int, count: int) -> tuple[list[T], int]:
    """The next ``count`` of ``keys`` (sorted by the caller) from ``cursor``, wrapping, and
    the cursor after them: every key is audited once per ``ceil(len(keys) / count)`` passes."""
    n = len(keys)
    if n == 0 or count <= 0:
        return [], 0
    count = min(count, n)
    start = cursor % n
    return [keys[(start + i) % n] for i in range(count)], (start + count) % n
