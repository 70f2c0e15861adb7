"""Which peers store which chunk of a file.

Capacity-weighted rendezvous (highest-random-weight) hashing, chunk by chunk, with two rules
on top: the owner's own peer is never a target, and no peer holds every chunk of a file.
docs/placement.md gives the algorithm and the proof that the fallback always succeeds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import blake3

from mydrive.errors import BadRequest, TooFewPeers

# Domain separation: a placement score must never equal any other BLAKE3 use in mydrive.
_CHUNK_CONTEXT = b"mydrive placement chunk v1\x00"
_FILE_CONTEXT = b"mydrive placement file v1\x00"

# Uniform draws use 52 bits so that (x + 0.5) / 2**52 is exact and strictly inside (0, 1).
_UNIFORM_BITS = 52


@dataclass(frozen=True)
class PeerSlot:
    """A candidate target: capacity weights its hash score; free space gates eligibility."""

    peer_id: str
    capacity_bytes: int
    free_bytes: int


def _uniform(*parts: bytes) -> float:
    hasher = blake3.blake3()
    for part in parts:
        # Length-prefix each part so that no two different inputs hash the same bytes.
        hasher.update(len(part).to_bytes(8, "big"))
        hasher.update(part)
    x = int.from_bytes(hasher.digest(8), "big") >> (64 - _UNIFORM_BITS)
    return (x + 0.5) / float(1 << _UNIFORM_BITS)


def _weighted_score(weight: int, u: float) -> float:
    # -w / ln(u) is the weighted-HRW score: a peer wins a draw with probability w / sum(w).
    return -float(weight) / math.log(u)


def _chunk_score(file_id: bytes, index: int, peer: PeerSlot) -> float:
    u = _uniform(_CHUNK_CONTEXT, file_id, index.to_bytes(8, "big"), peer.peer_id.encode())
    return _weighted_score(peer.capacity_bytes, u)


def _file_score(file_id: bytes, peer: PeerSlot) -> float:
    u = _uniform(_FILE_CONTEXT, file_id, peer.peer_id.encode())
    return _weighted_score(peer.capacity_bytes, u)


def _validate(
    file_id: bytes, chunk_sizes: Sequence[int], peers: Sequence[PeerSlot], replicas: int
) -> None:
    if not isinstance(file_id, bytes) or not file_id:
        raise BadRequest("file_id must be non-empty bytes")
    if isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 1:
        raise BadRequest(f"replicas={replicas!r} must be an integer >= 1")
    if len(chunk_sizes) == 0:
        raise BadRequest("a file has at least one chunk; chunk_sizes is empty")
    for index, size in enumerate(chunk_sizes):
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BadRequest(f"chunk_sizes[{index}]={size!r} must be a non-negative integer")
    seen: set[str] = set()
    for peer in peers:
        if peer.peer_id in seen:
            raise BadRequest(f"duplicate peer id {peer.peer_id!r}")
        seen.add(peer.peer_id)
        if peer.capacity_bytes < 0 or peer.free_bytes < 0:
            raise BadRequest(
                f"peer {peer.peer_id!r}: capacity_bytes={peer.capacity_bytes} and "
                f"free_bytes={peer.free_bytes} must be non-negative"
            )


def place_chunks(
    file_id: bytes,
    chunk_sizes: Sequence[int],
    peers: Sequence[PeerSlot],
    *,
    replicas: int,
    owner_peer_id: str | None,
) -> list[list[str]]:
    """For each chunk (``chunk_sizes`` are stored sizes), ``replicas`` distinct peer ids in
    preference order. Never the owner; no peer gets all chunks; same inputs in any peer order
    give the same answer. Raises TooFewPeers before anything is sent when no such placement
    is found."""
    _validate(file_id, chunk_sizes, peers, replicas)
    chunks = len(chunk_sizes)
    smallest = min(chunk_sizes)
    # Zero capacity means weight zero: such a peer would never win a draw, so it is not counted.
    eligible = sorted(
        (
            p
            for p in peers
            if p.peer_id != owner_peer_id and p.capacity_bytes > 0 and p.free_bytes >= smallest
        ),
        key=lambda p: p.peer_id,
    )
    n = len(eligible)
    if n < replicas + 1:
        raise TooFewPeers(n, replicas, chunks)
    if chunks == 1:
        raise TooFewPeers(
            n,
            replicas,
            chunks,
            reason="a single chunk always sits whole on its holders; cut the file into at least "
            "min_chunks_for_placement(N, R) chunks",
        )
    if n * (chunks - 1) < chunks * replicas:
        raise TooFewPeers(
            n,
            replicas,
            chunks,
            reason=f"N*(C-1) = {n * (chunks - 1)} < C*R = {chunks * replicas}; cut the file "
            "into at least min_chunks_for_placement(N, R) chunks",
        )
    placement = _place_greedy(file_id, chunk_sizes, eligible, replicas)
    if placement is None:
        placement = _place_round_robin(file_id, chunk_sizes, eligible, replicas)
    if placement is None:
        raise TooFewPeers(
            n,
            replicas,
            chunks,
            reason="the eligible peers lack the free space to hold every chunk "
            "without one peer holding all of them",
        )
    return placement


def _place_greedy(
    file_id: bytes, chunk_sizes: Sequence[int], eligible: list[PeerSlot], replicas: int
) -> list[list[str]] | None:
    """Per chunk, the R highest-scoring peers that have room and hold fewer than C-1 chunks;
    None when some chunk finds fewer than R."""
    cap = len(chunk_sizes) - 1
    held = {p.peer_id: 0 for p in eligible}
    free = {p.peer_id: p.free_bytes for p in eligible}
    placement: list[list[str]] = []
    for index, size in enumerate(chunk_sizes):
        ranked = sorted(eligible, key=lambda p: (-_chunk_score(file_id, index, p), p.peer_id))
        chosen: list[str] = []
        for peer in ranked:
            pid = peer.peer_id
            if held[pid] < cap and free[pid] >= size:
                chosen.append(pid)
                if len(chosen) == replicas:
                    break
        if len(chosen) < replicas:
            return None
        for pid in chosen:
            held[pid] += 1
            free[pid] -= size
        placement.append(chosen)
    return placement


def _place_round_robin(
    file_id: bytes, chunk_sizes: Sequence[int], eligible: list[PeerSlot], replicas: int
) -> list[list[str]] | None:
    """Deal the C*R replica slots in turn over peers ordered by their file-level score.
    With ample space every peer gets at most ceil(C*R/N) <= C-1 chunks; a peer without room
    or already at C-1 is skipped, and None means a full turn found no taker."""
    order = sorted(eligible, key=lambda p: (-_file_score(file_id, p), p.peer_id))
    n = len(order)
    cap = len(chunk_sizes) - 1
    held = [0] * n
    free = [p.free_bytes for p in order]
    cursor = 0
    placement: list[list[str]] = []
    for size in chunk_sizes:
        chosen: list[int] = []
        for _ in range(replicas):
            for step in range(n):
                k = (cursor + step) % n
                if k not in chosen and held[k] < cap and free[k] >= size:
                    break
            else:
                return None
            chosen.append(k)
            cursor = (k + 1) % n
        for k in chosen:
            held[k] += 1
            free[k] -= size
        placement.append([order[k].peer_id for k in chosen])
    return placement


def rank_peers(file_id: bytes, index: int, peers: Sequence[PeerSlot]) -> list[str]:
    """Every peer with positive capacity, in the order the placement prefers them for chunk
    ``index`` of the file (highest score first, ties by id): the order a repair or a
    rebalance picks new holders in (mydrive.engine.repair_policy)."""
    ranked = sorted((p for p in peers if p.capacity_bytes > 0),
                    key=lambda p: (-_chunk_score(file_id, index, p), p.peer_id))
    return [p.peer_id for p in ranked]


def holders_per_peer(placement: list[list[str]]) -> dict[str, int]:
    """How many chunks of the file each peer holds."""
    counts: dict[str, int] = {}
    for holders in placement:
        for pid in set(holders):
            counts[pid] = counts.get(pid, 0) + 1
    return counts
