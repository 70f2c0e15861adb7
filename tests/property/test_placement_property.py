"""Properties of chunk placement: the no-full-file rule, determinism, stability, weighting."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mydrive.errors import BadRequest, TooFewPeers
from mydrive.formats.chunkplan import (
    CHUNK_TAG_BYTES,
    DEFAULT_CHUNK_SIZE_BYTES,
    DEFAULT_SEGMENT_SIZE_BYTES,
    min_chunks_for_placement,
    plan_chunks,
)
from mydrive.formats.placement import PeerSlot, holders_per_peer, place_chunks

MIB = 1024 * 1024
AMPLE_BYTES = 1 << 50


def stored_sizes(size_bytes: int, eligible_peers: int, replicas: int) -> list[int]:
    """Stored (ciphertext) sizes of the chunks a file of size_bytes is cut into for placement."""
    try:
        min_chunks = min_chunks_for_placement(eligible_peers, replicas)
    except TooFewPeers:
        min_chunks = 1
    plan = plan_chunks(
        size_bytes,
        chunk_size_bytes=DEFAULT_CHUNK_SIZE_BYTES,
        segment_size_bytes=DEFAULT_SEGMENT_SIZE_BYTES,
        min_chunks=min_chunks,
    )
    return [plan.plaintext_length(i) + CHUNK_TAG_BYTES for i in range(plan.chunk_count)]


def make_peers(count: int, rng: random.Random, *, free_bytes: int = AMPLE_BYTES) -> list[PeerSlot]:
    return [
        PeerSlot(f"peer-{i:03d}", capacity_bytes=rng.randint(1, 16) * 10**12, free_bytes=free_bytes)
        for i in range(count)
    ]


def assert_valid(
    placement: list[list[str]], chunks: int, replicas: int, owner: str | None, peer_ids: set[str]
) -> None:
    assert len(placement) == chunks
    for holders in placement:
        assert len(holders) == replicas
        assert len(set(holders)) == replicas
        assert owner not in holders
        assert set(holders) <= peer_ids
    assert all(count < chunks for count in holders_per_peer(placement).values())


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[PeerSlot], int, int, str | None, bytes]:
    n = draw(st.integers(0, 40))
    replicas = draw(st.integers(1, 5))
    size_bytes = draw(st.integers(0, 200 * MIB))
    capacities = draw(st.lists(st.integers(1, 10**13), min_size=n, max_size=n))
    peers = [
        PeerSlot(f"p{i}", capacity_bytes=c, free_bytes=AMPLE_BYTES)
        for i, c in enumerate(capacities)
    ]
    owner = draw(st.sampled_from([None, *[p.peer_id for p in peers], "not-a-peer"]))
    file_id = draw(st.binary(min_size=16, max_size=16))
    return peers, replicas, size_bytes, owner, file_id


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_place_chunks_valid_exactly_when_enough_peers(
    scenario: tuple[list[PeerSlot], int, int, str | None, bytes],
) -> None:
    """With ample space, TooFewPeers iff eligible < R+1; else R distinct non-owner peers per
    chunk and no peer holds every chunk."""
    peers, replicas, size_bytes, owner, file_id = scenario
    eligible = sum(1 for p in peers if p.peer_id != owner)
    sizes = stored_sizes(size_bytes, eligible, replicas)
    if eligible < replicas + 1:
        with pytest.raises(TooFewPeers) as info:
            place_chunks(file_id, sizes, peers, replicas=replicas, owner_peer_id=owner)
        assert info.value.eligible_peers == eligible
        assert info.value.replicas == replicas
        assert info.value.chunks == len(sizes)
        return
    placement = place_chunks(file_id, sizes, peers, replicas=replicas, owner_peer_id=owner)
    assert_valid(placement, len(sizes), replicas, owner, {p.peer_id for p in peers})


@settings(max_examples=60, deadline=None)
@given(scenarios(), st.randoms(use_true_random=False))
def test_place_chunks_deterministic_under_peer_permutation(
    scenario: tuple[list[PeerSlot], int, int, str | None, bytes], rng: random.Random
) -> None:
    """The same peers in any order give the same placement."""
    peers, replicas, size_bytes, owner, file_id = scenario
    eligible = sum(1 for p in peers if p.peer_id != owner)
    if eligible < replicas + 1:
        return
    sizes = stored_sizes(size_bytes, eligible, replicas)
    shuffled = list(peers)
    rng.shuffle(shuffled)
    first = place_chunks(file_id, sizes, peers, replicas=replicas, owner_peer_id=owner)
    second = place_chunks(file_id, sizes, shuffled, replicas=replicas, owner_peer_id=owner)
    assert first == second


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(3, 12),
    replicas=st.integers(1, 3),
    chunks=st.integers(2, 12),
    file_id=st.binary(min_size=16, max_size=16),
)
def test_place_chunks_tight_counts_use_fallback_validly(
    n: int, replicas: int, chunks: int, file_id: bytes
) -> None:
    """Whenever N >= R+1 and N*(C-1) >= C*R a valid placement is found, else TooFewPeers."""
    peers = [PeerSlot(f"p{i}", capacity_bytes=1 + i % 3, free_bytes=AMPLE_BYTES) for i in range(n)]
    sizes = [1000] * chunks
    if n < replicas + 1 or n * (chunks - 1) < chunks * replicas:
        with pytest.raises(TooFewPeers):
            place_chunks(file_id, sizes, peers, replicas=replicas, owner_peer_id=None)
        return
    placement = place_chunks(file_id, sizes, peers, replicas=replicas, owner_peer_id=None)
    assert_valid(placement, chunks, replicas, None, {p.peer_id for p in peers})


def test_place_chunks_single_chunk_is_too_few_peers() -> None:
    """One chunk can never satisfy the no-full-file rule, so it is refused with a reason."""
    peers = make_peers(10, random.Random(1))
    with pytest.raises(TooFewPeers, match="single chunk"):
        place_chunks(b"f" * 16, [100], peers, replicas=2, owner_peer_id=None)


def test_place_chunks_adding_a_peer_moves_few_assignments() -> None:
    """Adding a 21st peer to 20 moves fewer than 25% of 200 chunks x 2 replica assignments."""
    seed = 20240601
    rng = random.Random(seed)
    peers = [PeerSlot(f"peer-{i:03d}", 10**12, AMPLE_BYTES) for i in range(21)]
    file_id = rng.randbytes(16)
    sizes = [DEFAULT_CHUNK_SIZE_BYTES + CHUNK_TAG_BYTES] * 200
    before = place_chunks(file_id, sizes, peers[:20], replicas=2, owner_peer_id=None)
    after = place_chunks(file_id, sizes, peers, replicas=2, owner_peer_id=None)
    moved = sum(len(set(a) - set(b)) for a, b in zip(after, before, strict=True))
    fraction = moved / (200 * 2)
    # HRW's expectation is about 1/21 of assignments.
    assert fraction < 0.25, f"seed={seed}: {fraction:.1%} of assignments moved"


def test_place_chunks_capacity_weights_share() -> None:
    """A peer with 4x the capacity of the others holds clearly more chunks (> 2x the mean)."""
    seed = 7
    rng = random.Random(seed)
    peers = [PeerSlot(f"peer-{i:03d}", 10**12, AMPLE_BYTES) for i in range(9)]
    peers.append(PeerSlot("big", 4 * 10**12, AMPLE_BYTES))
    placement = place_chunks(
        rng.randbytes(16), [1000] * 1000, peers, replicas=2, owner_peer_id=None
    )
    counts = holders_per_peer(placement)
    others = [counts.get(p.peer_id, 0) for p in peers[:9]]
    mean_other = sum(others) / len(others)
    assert counts["big"] > 2 * mean_other, f"seed={seed}: big={counts['big']} mean={mean_other}"


def test_place_chunks_skips_peers_without_free_space() -> None:
    """Peers whose free space is below a chunk's stored size never receive that chunk."""
    seed = 11
    rng = random.Random(seed)
    chunk = 1000
    peers = make_peers(8, rng)
    full = [PeerSlot(f"full-{i}", 10**15, chunk - 1) for i in range(4)]
    placement = place_chunks(
        rng.randbytes(16), [chunk] * 50, peers + full, replicas=2, owner_peer_id=None
    )
    held = holders_per_peer(placement)
    assert not any(pid.startswith("full-") for pid in held), f"seed={seed}: {held}"


def test_place_chunks_accounts_free_space_across_chunks() -> None:
    """A peer with room for one chunk gets at most one chunk of the file."""
    seed = 12
    rng = random.Random(seed)
    chunk = 1000
    tight = PeerSlot("tight", 10**16, chunk)  # huge weight: it would win every draw
    peers = [*make_peers(6, rng), tight]
    placement = place_chunks(rng.randbytes(16), [chunk] * 30, peers, replicas=2, owner_peer_id=None)
    assert holders_per_peer(placement).get("tight", 0) == 1, f"seed={seed}"


def test_place_chunks_too_little_space_is_too_few_peers() -> None:
    """When only R peers have room, TooFewPeers names the eligible count."""
    peers = [PeerSlot(f"p{i}", 10**12, 10 if i < 3 else AMPLE_BYTES) for i in range(5)]
    with pytest.raises(TooFewPeers) as info:
        place_chunks(b"f" * 16, [100] * 4, peers, replicas=2, owner_peer_id=None)
    assert (info.value.eligible_peers, info.value.replicas, info.value.chunks) == (2, 2, 4)


def test_place_chunks_rejects_bad_requests() -> None:
    """Duplicate peer ids, replicas < 1 and an empty chunk list are BadRequest."""
    peers = make_peers(5, random.Random(3))
    with pytest.raises(BadRequest, match="duplicate"):
        place_chunks(b"f" * 16, [1, 1], [*peers, peers[0]], replicas=2, owner_peer_id=None)
    with pytest.raises(BadRequest, match="replicas"):
        place_chunks(b"f" * 16, [1, 1], peers, replicas=0, owner_peer_id=None)
    with pytest.raises(BadRequest, match="chunk"):
        place_chunks(b"f" * 16, [], peers, replicas=1, owner_peer_id=None)


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 200), replicas=st.integers(1, 10))
def test_min_chunks_for_placement_is_smallest_valid(n: int, replicas: int) -> None:
    """min_chunks_for_placement is the smallest C with N*(C-1) >= C*R, or TooFewPeers."""
    if n < replicas + 1:
        with pytest.raises(TooFewPeers):
            min_chunks_for_placement(n, replicas)
        return
    c = min_chunks_for_placement(n, replicas)
    assert c >= 2
    assert n * (c - 1) >= c * replicas
    assert n * (c - 2) < (c - 1) * replicas
