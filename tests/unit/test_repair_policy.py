"""The pure repair policy: which chunks need replicas, where they go, pacing, liveness."""

from __future__ import annotations

import random

import pytest

from mydrive.engine.repair_policy import (
    ActionKind,
    Candidate,
    ChunkHealth,
    FileHealth,
    LivenessBook,
    PeerStatus,
    RepairBudget,
    ReplicaHealth,
    ReplicaState,
    next_audits,
    plan_rebalance,
    plan_repairs,
    replicas_needed,
)
from mydrive.formats.placement import PeerSlot, rank_peers

G, M, C, U, D = (ReplicaState.GOOD, ReplicaState.MISSING, ReplicaState.CORRUPT,
                 ReplicaState.UNREACHABLE, ReplicaState.DEAD)
UNLIMITED = RepairBudget(1 << 60, 1 << 30)
PEERS = [Candidate(f"p{i}", 1000) for i in range(6)]


def _file(fid: bytes, chunks: list[list[tuple[str, ReplicaState]]], *, size: int = 100,
          strays: dict[int, list[tuple[str, ReplicaState]]] | None = None) -> FileHealth:
    strays = strays or {}
    return FileHealth(fid, tuple(
        ChunkHealth(i, size, tuple(ReplicaHealth(p, s) for p, s in reps),
                    tuple(ReplicaHealth(p, s) for p, s in strays.get(i, [])))
        for i, reps in enumerate(chunks)))


def _holdings(health: FileHealth, actions) -> dict[str, set[int]]:
    held: dict[str, set[int]] = {}
    for chunk in health.chunks:
        for r in (*chunk.replicas, *chunk.strays):
            held.setdefault(r.peer_id, set()).add(chunk.index)
    for a in actions:
        held.setdefault(a.target, set()).add(a.chunk_index)
    return held


def test_repair_policy_replaces_lost_but_waits_for_unreachable() -> None:
    """Missing, corrupt and dead replicas are replaced; an unreachable one is waited for."""
    health = _file(b"f" * 16, [[("p1", G), ("p2", M)], [("p2", G), ("p3", C)],
                               [("p3", G), ("p4", U)], [("p4", G), ("p1", D)]])
    assert [replicas_needed(c, 2) for c in health.chunks] == [1, 1, 0, 1]
    plan = plan_repairs([health], PEERS, replicas=2, owner_peer_id="p0", budget=UNLIMITED)
    assert sorted(a.chunk_index for a in plan.actions) == [0, 1, 3]
    for action in plan.actions:
        chunk = health.chunks[action.chunk_index]
        assert action.kind == ActionKind.REPLICATE
        assert action.target != "p0" and action.target not in chunk.may_hold()
        assert action.sources == tuple(chunk.counted())
        assert action.drop == tuple(chunk.lost())


def test_repair_policy_targets_follow_placement_ranking() -> None:
    """The new holder is the best-ranked eligible peer of the placement's own ranking."""
    fid = b"r" * 16
    health = _file(fid, [[("p1", G), ("p2", M)], [("p3", G), ("p4", G)],
                         [("p5", G), ("p1", G)]])
    plan = plan_repairs([health], PEERS, replicas=2, owner_peer_id="p0", budget=UNLIMITED)
    (action,) = plan.actions
    slots = [PeerSlot(p.peer_id, p.capacity_bytes, p.capacity_bytes) for p in PEERS
             if p.peer_id != "p0"]
    expected = next(p for p in rank_peers(fid, 0, slots) if p not in ("p1", "p2"))
    assert action.target == expected


@pytest.mark.parametrize("seed", range(40))
def test_repair_policy_never_gives_a_peer_every_chunk(seed: int) -> None:
    """Random damage on random files: no plan makes any peer hold every chunk of a file."""
    rng = random.Random(seed)
    peers = [Candidate(f"p{i}", rng.choice([500, 1000, 4000]), live=rng.random() > 0.15)
             for i in range(rng.randint(4, 8))]
    files = []
    for f in range(3):
        count = rng.randint(2, 5)
        chunks = []
        for _ in range(count):
            holders = rng.sample([p.peer_id for p in peers[1:]], 2)
            chunks.append([(p, rng.choice([G, G, G, M, C, D, U])) for p in holders])
        files.append(_file(bytes([f]) * 16, chunks))
    plan = plan_repairs(files, peers, replicas=2, owner_peer_id="p0", budget=UNLIMITED)
    live = {p.peer_id for p in peers if p.live}
    for health in files:
        actions = plan.for_file(health.file_id)
        for peer_id, held in _holdings(health, actions).items():
            if any(a.target == peer_id for a in actions):
                assert len(held) < health.chunk_count, (seed, peer_id, held)
        for a in actions:
            assert a.target in live and a.target != "p0", seed
            chunk = health.chunks[a.chunk_index]
            again = {r.peer_id for r in chunk.replicas if r.state == M}  # lost it: may re-take
            assert a.target not in chunk.may_hold() - again, seed


def test_repair_policy_most_endangered_first_within_budget() -> None:
    """A chunk down to one replica goes before a healthier one; the rest is deferred."""
    fid = b"b" * 16
    health = _file(fid, [[("p1", G), ("p2", G), ("p3", M)],   # 2 of 3 counted
                         [("p2", G), ("p3", M), ("p4", M)],   # 1 of 3 counted
                         [("p4", G), ("p5", G), ("p1", G)]], size=100)
    budget = RepairBudget(max_bytes=250, max_actions=10)
    peers = [Candidate(f"p{i}", 1000) for i in range(9)]
    plan = plan_repairs([health], peers, replicas=3, owner_peer_id="p0", budget=budget)
    assert [a.chunk_index for a in plan.actions] == [1, 1]
    assert plan.deferred == 1 and plan.total_bytes == 200


def test_repair_policy_first_action_fits_any_budget() -> None:
    """A chunk larger than the byte budget is still repaired, one per pass."""
    health = _file(b"l" * 16, [[("p1", G), ("p2", M)], [("p2", G), ("p3", M)],
                               [("p3", G), ("p4", G)]], size=10_000)
    plan = plan_repairs([health], PEERS, replicas=2, owner_peer_id="p0",
                        budget=RepairBudget(max_bytes=1, max_actions=100))
    assert len(plan.actions) == 1 and plan.deferred == 1


def test_repair_policy_adopts_a_proven_stray_before_copying() -> None:
    """A stray copy an audit proved good becomes the replica: no bytes move."""
    health = _file(b"a" * 16, [[("p1", G), ("p2", M)], [("p2", G), ("p3", G)],
                               [("p3", G), ("p4", G)]],
                   strays={0: [("p5", G)], 1: [("p4", ReplicaState.UNAUDITED)]})
    plan = plan_repairs([health], PEERS, replicas=2, owner_peer_id="p0", budget=UNLIMITED)
    (action,) = plan.actions
    assert (action.kind, action.chunk_index, action.target, action.size_bytes) == \
        (ActionKind.ADOPT, 0, "p5", 0)


def test_repair_policy_counts_strays_as_holdings() -> None:
    """A peer holding stray copies of other chunks is not given the last one."""
    # 3 chunks; p5 holds strays of chunks 1 and 2, so it must not get chunk 0.
    health = _file(b"s" * 16, [[("p1", G), ("p2", C)], [("p2", G), ("p3", G)],
                               [("p3", G), ("p4", G)]],
                   strays={1: [("p5", U)], 2: [("p5", U)]})
    only = [Candidate("p1", 1000), Candidate("p2", 1000), Candidate("p5", 1_000_000)]
    plan = plan_repairs([health], only, replicas=2, owner_peer_id=None, budget=UNLIMITED)
    assert plan.actions == ()
    assert plan.unplaceable and "no eligible peer" in plan.unplaceable[0].reason


def test_repair_policy_peer_that_lost_a_chunk_gets_it_back_only_last() -> None:
    """A peer that says it lost a chunk is the last choice for it: another peer first; and
    when none other fits, it is given the chunk again (in place), never a peer that would
    then hold every chunk."""
    fid = b"m" * 16
    health = _file(fid, [[("p1", G), ("p2", M)], [("p3", G), ("p4", G)]])
    plenty = plan_repairs([health], PEERS, replicas=2, owner_peer_id="p0", budget=UNLIMITED)
    assert plenty.actions[0].target not in ("p1", "p2")
    few = [Candidate(p, 1000) for p in ("p1", "p2", "p3", "p4")]
    plan = plan_repairs([health], few, replicas=2, owner_peer_id=None, budget=UNLIMITED)
    (action,) = plan.actions
    assert action.target == "p2" and action.drop == ("p2",)


def _apply(health: FileHealth, actions) -> FileHealth:
    """The file after ``actions`` committed and their retired copies deleted."""
    chunks = {c.index: [(r.peer_id, r.state) for r in c.replicas] for c in health.chunks}
    for a in actions:
        chunks[a.chunk_index] = [(p, s) for p, s in chunks[a.chunk_index] if p not in a.drop]
        chunks[a.chunk_index].append((a.target, G))
    return _file(health.file_id, [chunks[i] for i in sorted(chunks)])


def _valid(health: FileHealth) -> bool:
    counts: dict[str, int] = {}
    for chunk in health.chunks:
        for r in chunk.replicas:
            counts[r.peer_id] = counts.get(r.peer_id, 0) + 1
    return max(counts.values()) < health.chunk_count


def test_repair_policy_reassigns_its_own_copies_to_fit_a_tight_file() -> None:
    """Three live peers, a 3-chunk file with two chunks lost on a dead peer: whichever
    target the first chunk gets, both chunks are placed, with no move and no peer given
    every chunk."""
    peers = [Candidate(p, 1000) for p in ("A", "B", "C")] + [Candidate("V", 1000, live=False)]
    for fid in (b"t" * 16, b"u" * 16, b"v" * 16, b"w" * 16):
        health = _file(fid, [[("V", D), ("A", G)], [("A", G), ("B", G)], [("V", D), ("C", G)]])
        plan = plan_repairs([health], peers, replicas=2, owner_peer_id=None, budget=UNLIMITED)
        assert [a.kind for a in plan.actions] == [ActionKind.REPLICATE] * 2, fid
        assert plan.unplaceable == () and plan.waiting_for_room == 0
        assert _valid(_apply(health, plan.actions))


def test_repair_policy_moves_a_replica_to_make_room_then_places() -> None:
    """When only a full peer could take the chunk, another chunk's replica is moved off it
    first (the chunk waits for the next round), and then the chunk fits: R everywhere and
    no peer with every chunk."""
    peers = [Candidate(p, 1000) for p in ("A", "B", "C")] + [Candidate("V", 1000, live=False)]
    health = _file(b"z" * 16, [[("A", G), ("B", G)], [("A", G), ("B", G)],
                               [("V", D), ("C", G)]])
    first = plan_repairs([health], peers, replicas=2, owner_peer_id=None, budget=UNLIMITED)
    (move,) = first.actions
    assert move.kind == ActionKind.MOVE and move.target == "C" and move.drop in (("A",), ("B",))
    assert first.waiting_for_room == 1 and first.unplaceable == ()
    moved = _apply(health, first.actions)
    assert _valid(moved)
    second = plan_repairs([moved], peers, replicas=2, owner_peer_id=None, budget=UNLIMITED)
    (action,) = second.actions
    assert action.kind == ActionKind.REPLICATE and action.target == move.drop[0]
    final = _apply(moved, second.actions)
    assert _valid(final) and all(len(c.counted()) == 2 for c in final.chunks)


def test_repair_policy_unplaceable_without_a_source() -> None:
    """A chunk whose every replica is lost is reported, not planned."""
    health = _file(b"x" * 16, [[("p1", M), ("p2", C)], [("p2", G), ("p3", G)]])
    plan = plan_repairs([health], PEERS, replicas=2, owner_peer_id="p0", budget=UNLIMITED)
    assert plan.actions == ()
    assert plan.unplaceable[0].reason == "no replica left to copy from"


def test_repair_policy_excluded_peer_is_not_chosen_again() -> None:
    """A target that failed earlier in the pass is excluded from the re-plan."""
    health = _file(b"e" * 16, [[("p1", G), ("p2", M)], [("p2", G), ("p3", G)],
                               [("p3", G), ("p4", G)]])
    first = plan_repairs([health], PEERS, replicas=2, owner_peer_id="p0", budget=UNLIMITED)
    again = plan_repairs([health], PEERS, replicas=2, owner_peer_id="p0", budget=UNLIMITED,
                         exclude=frozenset({first.actions[0].target}))
    assert again.actions[0].target != first.actions[0].target


def test_rebalance_moves_only_onto_newly_preferred_peers_and_settles() -> None:
    """After a new peer joins, moves go to it only, and re-planning after them finds none."""
    fid = b"n" * 16
    old = [Candidate(f"p{i}", 1000) for i in range(1, 5)]
    slots = [PeerSlot(p.peer_id, 1000, 1000) for p in old]
    chunks = [[(p, G) for p in rank_peers(fid, i, slots)[:2]] for i in range(6)]
    health = _file(fid, chunks)
    assert plan_rebalance([health], old, replicas=2, owner_peer_id=None,
                          budget=UNLIMITED).actions == ()
    new = [*old, Candidate("p9", 4000)]
    plan = plan_rebalance([health], new, replicas=2, owner_peer_id=None, budget=UNLIMITED)
    assert plan.actions and all(a.target == "p9" and a.kind == ActionKind.MOVE
                                for a in plan.actions)
    moved = [list(c) for c in chunks]
    for a in plan.actions:
        moved[a.chunk_index] = [(p, s) for p, s in moved[a.chunk_index] if p not in a.drop]
        moved[a.chunk_index].append(("p9", G))
    assert len(plan.actions) < health.chunk_count  # p9 never gets every chunk
    settled = plan_rebalance([_file(fid, moved)], new, replicas=2, owner_peer_id=None,
                             budget=UNLIMITED)
    assert settled.actions == ()


def test_rebalance_respects_its_budget_and_skips_damaged_chunks() -> None:
    """One move per budget; a chunk needing repair or with strays is not rebalanced."""
    fid = b"q" * 16
    chunks = [[("p1", G), ("p2", G)], [("p1", G), ("p2", M)], [("p2", G), ("p3", G)],
              [("p3", G), ("p1", G)]]
    peers = [Candidate(p, 1) for p in ("p1", "p2", "p3")] + [Candidate("p9", 10**9)]
    plan = plan_rebalance([_file(fid, chunks, strays={2: [("p4", U)]})], peers, replicas=2,
                          owner_peer_id=None, budget=RepairBudget(max_bytes=1, max_actions=9))
    assert len(plan.actions) == 1
    assert plan.actions[0].chunk_index not in (1, 2)


def test_liveness_dead_only_after_grace_over_several_probes() -> None:
    """Unanswered probes over the grace period make a peer dead; one answer resets it."""
    book = LivenessBook()
    grace = 600_000
    book.observe("p", False, 0)
    assert book.status("p", 0, grace_ms=grace, min_failed_probes=3) == PeerStatus.SUSPECT
    book.observe("p", False, 300_000)
    book.observe("p", False, 600_000)
    assert book.status("p", 600_000, grace_ms=grace, min_failed_probes=3) == PeerStatus.DEAD
    book.observe("p", True, 601_000)
    assert book.status("p", 601_000, grace_ms=grace) == PeerStatus.LIVE
    assert book.peers["p"].flaps == 1


def test_liveness_flapping_peer_is_never_dead() -> None:
    """A peer up for a moment in every grace period is suspect at worst, however long."""
    book = LivenessBook()
    grace = 600_000
    for t in range(0, 10 * grace, 100_000):
        book.observe("p", t % 500_000 == 0, t)  # answers once every 5 probes
        assert book.status("p", t, grace_ms=grace, min_failed_probes=3) != PeerStatus.DEAD


def test_liveness_one_late_probe_is_not_death() -> None:
    """An owner back after a long absence does not declare a peer dead on its first probe."""
    book = LivenessBook()
    book.observe("p", True, 0)
    book.observe("p", False, 10**9)
    assert book.status("p", 10**9, grace_ms=600_000, min_failed_probes=1) == \
        PeerStatus.SUSPECT


def test_liveness_book_json_round_trip_and_bad_input() -> None:
    """The book survives JSON; a malformed entry is dropped, not fatal."""
    book = LivenessBook()
    book.observe("a", False, 5)
    book.observe("b", True, 7)
    again = LivenessBook.from_json(book.to_json())
    assert again.to_json() == book.to_json()
    mixed = LivenessBook.from_json({"a": {"down_since_ms": "x"}, "b": {"last_seen_ms": 3}})
    assert list(mixed.peers) == ["b"]
    assert LivenessBook.from_json("nonsense").peers == {}


def test_next_audits_covers_every_replica_once_per_cycle() -> None:
    """Passes of k audits from a cursor visit each of n replicas once per ceil(n/k) passes."""
    keys = list(range(10))
    cursor, seen = 0, []
    for _ in range(4):  # ceil(10 / 3) passes
        batch, cursor = next_audits(keys, cursor, 3)
        seen += batch
    assert sorted(seen[:10]) == keys and len(seen) == 12
    assert next_audits([], 5, 3) == ([], 0)
    assert next_audits(keys, 0, 0) == ([], 0)
