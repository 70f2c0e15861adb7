"""Where a failed replica of an upload goes: new peers for the holes failed peers leave in a
file's placement, moving replicas that have not started sending when that is the only way.

The rules are the placement's (docs/placement.md): a chunk's replicas sit on distinct peers
and no peer holds ``cap`` + 1 = every chunk of the file. A hole is filled greedily when a live
peer has room (the least preferred choice is never taken over a better one that works);
otherwise along an augmenting path: the hole's chunk goes to a peer Q at the cap, one of Q's
unsent replicas moves to a peer P, and so on until a peer below the cap. That is one step of
a max-flow (chunks to peers, each peer's capacity its room under the cap), so when no path is
found, no rearrangement of the unsent replicas fills the hole (max-flow/min-cut). A
breadth-first search finds a shortest path: the fewest replicas moved.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

Hole = tuple[int, int]  # (chunk index, slot in that chunk's peer list)
Rank = Callable[[int, str, int], Any]  # (chunk, peer, peer's load) -> sort key, lower first


class Layout:
    """A working copy of a placement with holes (None) to fill. ``fixed(chunk, peer)`` says
    whether a replica must stay where it is (begun, stored); every other replica on a ``live``
    peer may move. Filled holes are movable too: later holes may reroute them."""

    def __init__(self, assigned: Sequence[Sequence[str | None]], *, live: Sequence[str],
                 fixed: Callable[[int, str], bool], cap: int, rank: Rank) -> None:
        self.slots: list[list[str | None]] = [list(peers) for peers in assigned]
        self.live = list(live)
        self.cap = cap
        self.rank = rank
        live_set = set(self.live)
        self.load: dict[str, int] = {}
        self.movable: dict[str, set[Hole]] = {p: set() for p in self.live}
        for chunk, peers in enumerate(self.slots):
            for slot, peer in enumerate(peers):
                if peer is None:
                    continue
                self.load[peer] = self.load.get(peer, 0) + 1
                if peer in live_set and not fixed(chunk, peer):
                    self.movable[peer].add((chunk, slot))

    def fill(self, hole: Hole) -> str | None:
        """Put a live peer into ``hole``, moving movable replicas along the shortest
        augmenting path if needed; the peer, or None (nothing changed) when none can."""
        root, root_slot = hole
        assert self.slots[root][root_slot] is None
        via: dict[str, int] = {}  # peer -> the chunk that would take its place on the path
        leaves: dict[int, Hole] = {}  # chunk -> (chunk, slot) of its replica that moves
        seen_chunks = {root}
        queue = deque([root])
        while queue:
            chunk = queue.popleft()
            holders = set(self.slots[chunk])
            takers = sorted((self.rank(chunk, p, self.load.get(p, 0)), p)
                            for p in self.live if p not in holders and p not in via)
            for _, peer in takers:
                via[peer] = chunk
                if self.load.get(peer, 0) < self.cap:
                    self._shift(peer, via, leaves, hole)
                    return self.slots[root][root_slot]
                # At the cap: one of its unsent replicas could make room by moving on.
                # Latest chunks first: they are the furthest from being sent.
                for moved in sorted(self.movable[peer], reverse=True):
                    if moved[0] not in seen_chunks:
                        seen_chunks.add(moved[0])
                        leaves[moved[0]] = moved
                        queue.append(moved[0])
        return None

    def _shift(self, end: str, via: dict[str, int], leaves: dict[int, Hole],
               hole: Hole) -> None:
        """Apply the path found by ``fill``, from the peer with room back to the hole."""
        peer = end
        self.load[end] = self.load.get(end, 0) + 1  # the others each lose one, gain one
        while True:
            chunk = via[peer]
            if chunk == hole[0]:
                self.slots[chunk][hole[1]] = peer
                self.movable[peer].add(hole)
                return
            source = leaves[chunk]
            previous = self.slots[chunk][source[1]]
            assert previous is not None
            self.slots[chunk][source[1]] = peer
            self.movable[previous].discard(source)
            self.movable[peer].add(source)
            peer = previous
