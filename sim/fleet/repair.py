"""Repair policies: when a chunk has lost replicas, whether, when and where to copy it again.

The product has no repair module yet (issue 15). Until it has, the fleet calls a policy
through this small interface, and two are written here against the product's placement
function:

* ``NoRepair``: replicas lost stay lost (the baseline durability of R alone);
* ``RereplicateAfterGrace``: a chunk whose online replicas stayed below R for ``grace_h``
  gets new copies (from an online replica) on the peers the product's placement prefers
  for that chunk, among live peers that don't hold it, never making one peer hold every
  chunk of the file. The grace keeps a peer that is only rebooting from costing a copy.

When the product grows ``mydrive.engine.repair``, a third policy here should call it instead
(docs/simulator.md says what it should expose), so the fleet measures the real one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mydrive.errors import TooFewPeers
from mydrive.formats.placement import PeerSlot, place_chunks


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
