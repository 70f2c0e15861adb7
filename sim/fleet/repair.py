"""Repair policies: when a chunk has lost replicas, whether, when and where to copy it again.

The fleet calls a policy through this small interface. Three are here:

* ``NoRepair``: replicas lost stay lost (the baseline durability of R alone);
* ``RereplicateAfterGrace``: a chunk whose online replicas stayed below R for ``grace_h``
  gets new copies (from an online replica) on the peers the product's placement prefers
  for that chunk, among live peers that don't hold it, never making one peer hold every
  chunk of the file. The grace keeps a peer that is only rebooting from costing a copy.
  Written against ``place_chunks`` before the product had a repair policy;
* ``ProductRepair``: the product's own policy (``mydrive.engine.repair_policy.plan_repairs``,
  issue 15) handed the file's health as the fleet knows it: a copy on an online peer counts,
  one offline for less than ``grace_h`` is waited for, one offline longer is dead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mydrive.engine.repair_policy import (
    ActionKind,
    Candidate,
    ChunkHealth,
    FileHealth,
    RepairBudget,
    ReplicaHealth,
    ReplicaState,
    plan_repairs,
)
from mydrive.errors import TooFewPeers
from mydrive.formats.placement import PeerSlot, place_chunks

UNLIMITED = RepairBudget(max_bytes=1 << 62, max_actions=1 << 30)


class FleetView(Protocol):
    """What a policy may ask of the fleet (sim.fleet.model.Fleet)."""

    chunks_per_file: int
    replicas: int

    def file_id(self, file: int) -> bytes: ...

    def owner(self, file: int) -> int: ...

    def chunk_sizes(self, file: int) -> list[int]: ...

    def holders_of(self, chunk: int) -> list[int]:
        """Peers whose disk holds the chunk (online or not)."""
        ...

    def file_counts(self, file: int) -> dict[int, int]:
        """Peer -> how many of the file's chunks it holds."""
        ...

    def online_sample(self, count: int, exclude: Sequence[int]) -> list[int]:
        """Up to ``count`` distinct online peers, drawn from the run's seed."""
        ...

    def is_online(self, peer: int) -> bool: ...

    def offline_for_h(self, peer: int) -> float:
        """Hours since the peer went offline (0 when online)."""
        ...

    def slot(self, peer: int) -> PeerSlot: ...

    def peer_of(self, peer_id: str) -> int: ...


class RepairPolicy(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def grace_h(self) -> float | None:
        """Hours a chunk stays below R before it is repaired; None: never repairs."""
        ...

    def targets(self, fleet: FleetView, chunk: int, wanted: int) -> list[int]:
        """Up to ``wanted`` peers to receive a new copy of ``chunk`` now."""
        ...


@dataclass(frozen=True)
class NoRepair:
    name: str = "none"
    grace_h: float | None = None

    def targets(self, fleet: FleetView, chunk: int, wanted: int) -> list[int]:
        return []


@dataclass(frozen=True)
class RereplicateAfterGrace:
    """Back to R after ``grace_h`` below it, where the product's placement says."""

    grace_h: float | None = 24.0
    candidates: int = 0           # peers placement chooses among (0: R + 2)
    name: str = "rereplicate"
    # A planted bug (tests only): ignore the no-full-file rule and prefer the peers that
    # already hold the file's other chunks.
    ignore_no_full_file: bool = False

    def targets(self, fleet: FleetView, chunk: int, wanted: int) -> list[int]:
        per_file = fleet.chunks_per_file
        file, index = divmod(chunk, per_file)
        owner = fleet.owner(file)
        holding = set(fleet.holders_of(chunk))
        counts = fleet.file_counts(file)
        # R + 2 online peers (the fewest that always admit a placement of 4+ chunks): the
        # product's placement scores every candidate for every chunk of the file, which is
        # what a repair costs here.
        k = self.candidates or fleet.replicas + 2
        pool = fleet.online_sample(k, exclude=[owner])
        try:
            placement = place_chunks(fleet.file_id(file), fleet.chunk_sizes(file),
                                     [fleet.slot(p) for p in dict.fromkeys(pool)],
                                     replicas=fleet.replicas,
                                     owner_peer_id=fleet.slot(owner).peer_id)
        except TooFewPeers:
            return []
        # The chunk's own preference first, then the file's other choices.
        ranked = [fleet.peer_of(p) for p in placement[index]]
        ranked += [fleet.peer_of(p) for row in placement for p in row]
        if self.ignore_no_full_file:
            ranked = sorted((p for p in counts if fleet.is_online(p)),
                            key=lambda p: (-counts[p], p)) + ranked
        chosen: list[int] = []
        for peer in dict.fromkeys(ranked):
            if peer in holding or peer == owner:
                continue
            if not self.ignore_no_full_file and counts.get(peer, 0) + 1 >= per_file:
                continue  # it would then hold every chunk of the file
            chosen.append(peer)
            if len(chosen) == wanted:
                break
        return chosen


@dataclass(frozen=True)
class ProductRepair:
    """The product's ``plan_repairs``: the chunk's replicas as states, candidates sampled."""

    grace_h: float | None = 24.0  # DurabilitySettings.dead_after_s, in hours
    candidates: int = 0           # online peers the ranking is over (0: 2R + 2)
    name: str = "product"

    def targets(self, fleet: FleetView, chunk: int, wanted: int) -> list[int]:
        per_file = fleet.chunks_per_file
        file, index = divmod(chunk, per_file)
        owner = fleet.owner(file)
        grace = self.grace_h if self.grace_h is not None else float("inf")
        sizes = fleet.chunk_sizes(file)
        chunks = []
        holders: set[int] = set()
        for i in range(per_file):
            states = []
            for peer in fleet.holders_of(file * per_file + i):
                holders.add(peer)
                down_h = fleet.offline_for_h(peer)
                state = (ReplicaState.UNAUDITED if down_h == 0.0 else
                         ReplicaState.DEAD if down_h >= grace else ReplicaState.UNREACHABLE)
                states.append(ReplicaHealth(fleet.slot(peer).peer_id, state))
            chunks.append(ChunkHealth(index=i, size_bytes=sizes[i], replicas=tuple(states)))
        health = FileHealth(file_id=fleet.file_id(file), chunks=tuple(chunks))
        k = self.candidates or 2 * fleet.replicas + 2
        pool = list(dict.fromkeys(fleet.online_sample(k, exclude=[owner]) + sorted(holders)))
        candidates = [Candidate(peer_id=fleet.slot(p).peer_id,
                                capacity_bytes=fleet.slot(p).capacity_bytes,
                                live=fleet.is_online(p)) for p in pool]
        plan = plan_repairs([health], candidates, replicas=fleet.replicas,
                            owner_peer_id=fleet.slot(owner).peer_id, budget=UNLIMITED)
        return [fleet.peer_of(a.target) for a in plan.actions
                if a.chunk_index == index and a.kind == ActionKind.REPLICATE][:wanted]
