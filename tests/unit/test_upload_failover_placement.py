"""Upload failover: a failed replica finds a new peer whenever any rearrangement of the
replicas not yet begun makes room for it, and a choice made now never corners a later chunk.

Found by chaos `partition-and-heal` seed 2: a 5-chunk, R = 2 file with one of 4 peers cut off
failed with "no other peer may take it", although the 3 others could hold its 10 replicas
(docs/chaos.md). The greedy substitute only looked for a peer below the cap.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from functools import cache
from itertools import combinations
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from mydrive.engine.download import download_file
from mydrive.engine.replacement import Layout
from mydrive.engine.upload import _Replicas, upload_file
from mydrive.errors import PeerUnavailable
from mydrive.runtime.events import EventLog
from mydrive.runtime.executor import inline_executor
from mydrive.testing.randomness import SeededRandomness
from tests.strategies import SMALL_SETTINGS, fast_user, mem_network, random_file, record_of
from tests.unit.test_upload_standby import FlakyTransport

FILE_ID = b"\x07" * 16


def _loads(assigned: Sequence[Sequence[str]]) -> dict[str, int]:
    loads: dict[str, int] = {}
    for peers in assigned:
        for p in peers:
            loads[p] = loads.get(p, 0) + 1
    return loads


def _begun_replicas(replicas: _Replicas) -> set[tuple[int, str]]:
    return {(c, p) for c in range(replicas.begun) for p in replicas.assigned[c]}


def _assert_valid(before: list[list[str]], replicas: _Replicas,
                  started_before: set[tuple[int, str]], chunk: int, failed_peer: str,
                  replication: int) -> None:
    after = replicas.assigned
    chunk_count = len(after)
    assert len(after) == len(before)
    for c, peers in enumerate(after):
        assert len(set(peers)) == len(peers), f"chunk {c} twice on one peer: {peers}"
        assert len(peers) == replication, f"chunk {c} has {peers}"
        # Nothing new goes to a failed peer.
        assert {p for p in peers if p in replicas.failed} <= set(before[c])
    assert all(n < chunk_count for n in _loads(after).values()), _loads(after)
    for c, p in started_before - {(chunk, failed_peer)}:
        assert p in after[c], f"begun replica ({c}, {p}) was moved"


def test_cornered_failover_moves_a_replica_not_yet_sent() -> None:
    """5 chunks, R = 2, peers a-d, cap 4: d fails for chunk 0 (held with c). a and b, the only
    peers without chunk 0, hold 4 chunks each; chunk 4 is not begun, so its replica on a
    moves to c and a takes chunk 0. The greedy choice alone found nobody."""
    plan = [["c", "d"], ["a", "b"], ["a", "b"], ["a", "b"], ["a", "b"]]
    replicas = _Replicas(FILE_ID, plan, ["a", "b", "c", "d"])
    for chunk in range(4):
        replicas.begin(chunk)
    started = _begun_replicas(replicas)

    assert replicas.substitute(0, "d") == "a"

    assert replicas.assigned == [["c", "a"], ["a", "b"], ["a", "b"], ["a", "b"], ["c", "b"]]
    _assert_valid(plan, replicas, started, 0, "d", 2)
    assert replicas.begin(4) == ["c", "b"]  # the chunk is sent where it now lives


def test_failover_fails_clearly_when_the_replicas_are_all_begun() -> None:
    """The same plan with chunk 4 begun too: nothing may move, so there is no substitute."""
    plan = [["c", "d"], ["a", "b"], ["a", "b"], ["a", "b"], ["a", "b"]]
    replicas = _Replicas(FILE_ID, plan, ["a", "b", "c", "d"])
    for chunk in range(5):
        replicas.begin(chunk)
    assert replicas.substitute(0, "d") is None
    assert replicas.assigned[1:] == plan[1:]


def test_a_dead_peers_later_replicas_are_rehomed_at_once() -> None:
    """d fails for chunk 1 and also holds chunk 2 (not begun); cap 2. The greedy choice for
    chunk 1 alone (b, by the hash tie-break between a and b) fills b and c, and chunk 2 (on a)
    then has nowhere to go. Both holes are filled in the same go, chunk 1 on a and chunk 2 on
    b, and chunk 2 is later sent to b, never to d."""
    plan = [["c", "b"], ["c", "d"], ["d", "a"]]
    moved: list[tuple[int, str, str]] = []
    replicas = _Replicas(FILE_ID, plan, ["a", "b", "c", "d"],
                         on_move=lambda c, old, new: moved.append((c, old, new)))
    replicas.begin(0)
    replicas.begin(1)
    started = _begun_replicas(replicas)

    assert replicas.substitute(1, "d") == "a"

    _assert_valid(plan, replicas, started, 1, "d", 2)
    assert moved == [(2, "d", "b")]
    assert replicas.begin(2) == ["b", "a"]


# --- the property: same answers as an exhaustive search --------------------------------


def _completable(assigned: Sequence[Sequence[str | None]], holes: Collection[tuple[int, int]],
                 live: Sequence[str], fixed: Collection[tuple[int, str]], cap: int) -> bool:
    """Exhaustively: can every hole in ``holes`` get a live peer, the movable replicas (not
    in ``fixed``, on a live peer) going anywhere, with distinct peers per chunk and at most
    ``cap`` chunks on a live peer? Chunk by chunk over every choice of peer set, memoised on
    the loads."""
    live = sorted(live)
    index = {p: k for k, p in enumerate(live)}
    kept: list[set[str]] = []
    free: list[int] = []
    base = [0] * len(live)
    for c, peers in enumerate(assigned):
        stay = {p for s, p in enumerate(peers)
                if (c, s) not in holes and p is not None
                and (p not in index or (c, p) in fixed)}
        kept.append(stay)
        # Holes to fill and movable replicas; a hole not asked about stays empty.
        free.append(sum(1 for s, p in enumerate(peers)
                        if (c, s) in holes or (p is not None and p not in stay)))
        for p in stay:
            if p in index:
                base[index[p]] += 1
    if any(n > cap for n in base):
        return False

    @cache
    def search(c: int, loads: tuple[int, ...]) -> bool:
        if c == len(assigned):
            return True
        options = [p for p in live if p not in kept[c]]
        for chosen in combinations(options, free[c]):
            new = list(loads)
            for p in chosen:
                new[index[p]] += 1
            if all(n <= cap for n in new) and search(c + 1, tuple(new)):
                return True
        return False

    return search(0, tuple(base))


def _failed_holes(assigned: Sequence[Sequence[str]], failed: Collection[str]
                  ) -> set[tuple[int, int]]:
    return {(c, s) for c, peers in enumerate(assigned) for s, p in enumerate(peers)
            if p in failed}


@st.composite
def _plans(draw: st.DrawFn) -> tuple[list[list[str]], list[str], int]:
    """A valid placement: 2-8 chunks on R = 2-3 of 3-6 peers, at most C - 1 chunks a peer."""
    chunk_count = draw(st.integers(2, 8))
    peer_count = draw(st.integers(3, 6))
    replication = draw(st.integers(2, 3))
    assume(peer_count >= replication + 1)
    assume(peer_count * (chunk_count - 1) >= chunk_count * replication)
    peers = [f"p{k}" for k in range(peer_count)]
    loads = dict.fromkeys(peers, 0)
    plan = []
    for _ in range(chunk_count):
        order = draw(st.permutations(peers))
        chosen = [p for p in order if loads[p] < chunk_count - 1][:replication]
        assume(len(chosen) == replication)
        for p in chosen:
            loads[p] += 1
        plan.append(chosen)
    return plan, peers, replication


_STEPS = st.lists(st.one_of(st.just("begin"), st.tuples(st.integers(0, 7), st.integers(0, 2))),
                  min_size=1, max_size=14)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(_plans(), st.booleans(), _STEPS)
def test_substitute_finds_a_peer_whenever_one_exists(plan_case, with_standby, steps) -> None:  # type: ignore[no-untyped-def]
    """An upload's life: chunks begin in order, replicas of begun chunks fail. Each failure
    gets a peer exactly when the exhaustive search finds any arrangement of the unbegun
    replicas that houses it; the result keeps the rules; and when the failed peers' other
    replicas could all be housed before, they still can after."""
    plan, peers, replication = plan_case
    # A peer nothing was planned for may stand by (it missed the placement probe).
    idle = [p for p in peers if not any(p in c for c in plan)]
    standby = idle[:1] if with_standby else []
    eligible = [p for p in peers if p not in standby]
    replicas = _Replicas(FILE_ID, plan, eligible, standby=standby)
    cap = len(plan) - 1
    for step in steps:
        if step == "begin":
            if replicas.begun < len(plan):
                replicas.begin(replicas.begun)
            continue
        if replicas.begun == 0:
            continue
        chunk, slot = step[0] % replicas.begun, step[1] % replication
        if slot >= len(replicas.assigned[chunk]):
            continue
        peer = replicas.assigned[chunk][slot]
        if peer in replicas.failed:
            continue  # a failed replica fails over once
        before = [list(p) for p in replicas.assigned]
        started = _begun_replicas(replicas)
        failed_now = replicas.failed | {peer}
        live = [p for p in (*eligible, *standby) if p not in failed_now]
        # This hole alone, and this hole with every other replica a failed peer holds.
        alone = _completable(before, {(chunk, slot)}, live, started, cap)
        everything = _completable(before, _failed_holes(before, failed_now), live, started, cap)

        chosen = replicas.substitute(chunk, peer)

        if chosen is None:
            assert not alone, f"a home exists for chunk {chunk}, substitute found none"
            event("no substitute")
            return  # the upload ends here
        event("other replicas moved" if any(
            a != b for c, (a, b) in enumerate(zip(before, replicas.assigned, strict=True))
            if c != chunk) else "only the failed replica replaced")
        assert alone
        assert chosen in live and chosen in replicas.assigned[chunk]
        _assert_valid(before, replicas, started, chunk, peer, replication)
        if everything:
            after = replicas.assigned
            assert _completable(after, _failed_holes(after, replicas.failed), live,
                                _begun_replicas(replicas), cap), \
                "the choice left a failed peer's other replica without a home"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(_plans(), st.data())
def test_layout_fills_a_hole_whenever_one_can_be(plan_case, data) -> None:  # type: ignore[no-untyped-def]
    """The search alone, with any set of replicas fixed (not only whole chunks): the failed
    peers' replicas are holes, filled one by one; each is filled exactly when the exhaustive
    search says it can be, and the layout keeps the rules and the fixed replicas."""
    plan, peers, replication = plan_case
    cap = len(plan) - 1
    failed = data.draw(st.sets(st.sampled_from(peers), min_size=1, max_size=2))
    live = [p for p in peers if p not in failed]
    every = [(c, p) for c, chunk in enumerate(plan) for p in chunk]
    fixed = data.draw(st.sets(st.sampled_from(every)))
    holes = sorted(_failed_holes(plan, failed))
    slots: list[list[str | None]] = [[None if p in failed else p for p in chunk]
                                     for chunk in plan]
    layout = Layout(slots, live=live, fixed=lambda c, p: (c, p) in fixed, cap=cap,
                    rank=lambda c, p, load: (load, p))
    for hole in holes:
        before = [list(chunk) for chunk in layout.slots]
        possible = _completable(before, {hole}, live, fixed, cap)
        filled = layout.fill(hole)
        event("filled" if filled else "not filled")
        assert (filled is not None) == possible, (before, hole, fixed)
        if filled is None:
            assert layout.slots == before
            continue
        for c, chunk in enumerate(layout.slots):
            present = [p for p in chunk if p is not None]
            assert len(set(present)) == len(present)
        assert all(n <= cap for n in _loads(
            [[p for p in chunk if p is not None] for chunk in layout.slots]).values())
        assert all(p in layout.slots[c] for c, p in fixed if p in live)


def test_the_search_agrees_with_itself_on_a_known_case() -> None:
    """The exhaustive search: the cornered case is completable with chunk 4 movable only."""
    plan: list[list[str | None]] = [["c", None], ["a", "b"], ["a", "b"], ["a", "b"],
                                    ["a", "b"]]
    begun = {(c, p) for c in range(4) for p in plan[c] if p}
    assert _completable(plan, {(0, 1)}, ["a", "b", "c"], begun, 4)
    assert not _completable(plan, {(0, 1)}, ["a", "b", "c"], begun | {(4, "a"), (4, "b")}, 4)


# --- end to end: a real upload over the in-memory network -------------------------------


def _upload_with_dead_peer(tmp_path: Path, seed: int, dead: str):  # type: ignore[no-untyped-def]
    """A 3-chunk file (the fewest for 4 peers and R = 2), ``dead`` failing every store."""
    net = mem_network(tmp_path / "peers", 5)
    transport = FlakyTransport(net.transport, silent_probes={}, dead_stores={dead})
    keys = fast_user()
    src = random_file(tmp_path / "src.bin", 10)
    events = EventLog()
    result = upload_file(src, keys=keys, owner_peer_id="p0", peers=net.peers,
                         settings=SMALL_SETTINGS, transport=transport, clock=net.clock,
                         executor=inline_executor, randomness=SeededRandomness(seed),
                         events=events)
    return net, keys, src, result, events


@pytest.mark.parametrize(("seed", "dead"), [(0, "p3"), (6, "p3")])
def test_upload_survives_a_dead_peer_the_greedy_failover_could_not(
        tmp_path: Path, seed: int, dead: str) -> None:
    """Seed 0: the greedy substitute for the dead peer's first chunk left its last chunk no
    home; seed 6: its first failed chunk had none unless the last chunk's planned replica
    moved. Both failed before; the file now reads back, and the moves are in the events."""
    net, keys, src, result, events = _upload_with_dead_peer(tmp_path, seed, dead)
    holders = [c.replicas for c in result.chunks]
    assert len(holders) == 3
    assert all(len(set(h)) == 2 and dead not in h for h in holders), holders
    assert all(sum(p in h for h in holders) < 3 for p in ("p1", "p2", "p3", "p4"))
    assert events.of_kind("upload.moved")
    out = tmp_path / "out.bin"
    download_file(record_of(result, keys), out, keys=keys, peers=net.addresses,
                  settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock)
    assert out.read_bytes() == src.read_bytes()


def test_upload_says_why_when_no_rearrangement_helps(tmp_path: Path) -> None:
    """Seed 8, p2 dead: p2 holds only the last chunk, whose failure is found once the other
    chunks are sent and the other two peers are full; the error says so."""
    with pytest.raises(PeerUnavailable, match=r"none of the 3 live peers \(of 4 known\) can "
                                              r"take it.*no rearrangement of the replicas "
                                              r"not yet sent makes room"):
        _upload_with_dead_peer(tmp_path, 8, "p2")
