"""How files are cut into chunks and chunk ciphertexts into segments."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mydrive.errors import BadRequest, TooFewPeers
from mydrive.formats.chunkplan import (
    DEFAULT_CHUNK_SIZE_BYTES,
    DEFAULT_SEGMENT_SIZE_BYTES,
    MAX_CHUNK_SIZE_BYTES,
    MAX_SEGMENTS_PER_CHUNK,
    MIN_SEGMENT_SIZE_BYTES,
    ChunkPlan,
    min_chunks_for_placement,
    plan_chunks,
    segment_ranges,
)

CHUNK = DEFAULT_CHUNK_SIZE_BYTES
SEGMENT = DEFAULT_SEGMENT_SIZE_BYTES


def plan(size_bytes: int, min_chunks: int = 1) -> ChunkPlan:
    return plan_chunks(
        size_bytes, chunk_size_bytes=CHUNK, segment_size_bytes=SEGMENT, min_chunks=min_chunks
    )


def ranges(p: ChunkPlan) -> list[tuple[int, int]]:
    return [p.chunk_range(i) for i in range(p.chunk_count)]


def test_plan_chunks_zero_bytes_is_one_empty_chunk() -> None:
    """An empty file is one empty chunk."""
    p = plan(0)
    assert (p.chunk_count, ranges(p)) == (1, [(0, 0)])


def test_plan_chunks_one_byte_is_one_chunk() -> None:
    """A one-byte file is one one-byte chunk."""
    p = plan(1)
    assert (p.chunk_count, ranges(p), p.plaintext_length(0)) == (1, [(0, 1)], 1)


def test_plan_chunks_boundaries_around_chunk_size() -> None:
    """chunk-1 and chunk bytes give one chunk; chunk+1 gives a full chunk and a 1-byte tail."""
    assert ranges(plan(CHUNK - 1)) == [(0, CHUNK - 1)]
    assert ranges(plan(CHUNK)) == [(0, CHUNK)]
    assert ranges(plan(CHUNK + 1)) == [(0, CHUNK), (CHUNK, CHUNK + 1)]
    assert ranges(plan(2 * CHUNK)) == [(0, CHUNK), (CHUNK, 2 * CHUNK)]


def test_plan_chunks_min_chunks_expands_small_file() -> None:
    """A file with fewer natural chunks than min_chunks is cut into min_chunks smaller ones."""
    p = plan(10, min_chunks=3)
    assert (p.chunk_count, p.chunk_size_bytes) == (3, 4)
    assert ranges(p) == [(0, 4), (4, 8), (8, 10)]
    q = plan(CHUNK + 1, min_chunks=3)
    assert q.chunk_count == 3
    assert q.chunk_size_bytes == -(-(CHUNK + 1) // 3)


def test_plan_chunks_min_chunks_on_tiny_file_gives_empty_tail_chunks() -> None:
    """More chunks than bytes: chunk size 1 and empty chunks at the tail."""
    assert ranges(plan(0, min_chunks=3)) == [(0, 0), (0, 0), (0, 0)]
    assert ranges(plan(1, min_chunks=3)) == [(0, 1), (1, 1), (1, 1)]


def test_plan_chunks_min_chunks_below_natural_is_ignored() -> None:
    """min_chunks below the natural count changes nothing."""
    assert plan(10 * CHUNK, min_chunks=3) == plan(10 * CHUNK)


@settings(max_examples=300, deadline=None)
@given(size=st.integers(0, 200 * 1024 * 1024), min_chunks=st.integers(1, 8))
def test_plan_chunks_ranges_tile_the_file(size: int, min_chunks: int) -> None:
    """Chunk ranges are contiguous, cover [0, size) exactly, and round-trip through JSON."""
    p = plan(size, min_chunks)
    assert p.chunk_count >= min_chunks
    rs = ranges(p)
    assert rs[0][0] == 0
    assert rs[-1][1] == size
    for (_, end), (start, _) in zip(rs, rs[1:], strict=False):
        assert end == start
    assert all(0 <= e - s <= p.chunk_size_bytes for s, e in rs)
    assert sum(p.plaintext_length(i) for i in range(p.chunk_count)) == size
    assert ChunkPlan.from_json(p.to_json()) == p


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"chunk_size_bytes": 0}, "chunk_size_bytes"),
        ({"chunk_size_bytes": MAX_CHUNK_SIZE_BYTES + 1}, "chunk_size_bytes"),
        ({"segment_size_bytes": MIN_SEGMENT_SIZE_BYTES - 1}, "segment_size_bytes"),
        ({"segment_size_bytes": 2 * CHUNK}, "segment_size_bytes"),
        ({"chunk_size_bytes": MAX_CHUNK_SIZE_BYTES, "segment_size_bytes": 4096}, "segments"),
        ({"min_chunks": 0}, "min_chunks"),
        ({"size_bytes": -1}, "size_bytes"),
        ({"chunk_size_bytes": True}, "chunk_size_bytes"),
    ],
)
def test_plan_chunks_rejects_bad_sizes(kwargs: dict[str, int], name: str) -> None:
    """Out-of-range sizes raise BadRequest naming the offending value."""
    args = {
        "size_bytes": 100,
        "chunk_size_bytes": CHUNK,
        "segment_size_bytes": SEGMENT,
        "min_chunks": 1,
    }
    args.update(kwargs)
    size = args.pop("size_bytes")
    with pytest.raises(BadRequest, match=name):
        plan_chunks(size, **args)


def test_chunk_plan_chunk_range_rejects_out_of_range_index() -> None:
    """Chunk indices outside [0, chunk_count) are BadRequest."""
    p = plan(CHUNK + 1)
    for index in (-1, 2):
        with pytest.raises(BadRequest, match="chunk index"):
            p.chunk_range(index)


@pytest.mark.parametrize(
    "doc",
    [
        None,
        [],
        {"size_bytes": 1},
        {
            "version": 2,
            "size_bytes": 1,
            "chunk_size_bytes": 1,
            "chunk_count": 1,
            "segment_size_bytes": SEGMENT,
        },
        {
            "version": 1,
            "size_bytes": 10,
            "chunk_size_bytes": 4,
            "chunk_count": 2,
            "segment_size_bytes": SEGMENT,
        },  # does not cover the file
        {
            "version": 1,
            "size_bytes": 10,
            "chunk_size_bytes": 4,
            "chunk_count": 9,
            "segment_size_bytes": SEGMENT,
        },  # more chunks than an expansion would give
        {
            "version": 1,
            "size_bytes": 0,
            "chunk_size_bytes": 1,
            "chunk_count": 10**9,
            "segment_size_bytes": SEGMENT,
        },  # unbounded empty chunks
        {
            "version": 1,
            "size_bytes": "10",
            "chunk_size_bytes": 4,
            "chunk_count": 3,
            "segment_size_bytes": SEGMENT,
        },
        {
            "version": 1,
            "size_bytes": 10,
            "chunk_size_bytes": 4,
            "chunk_count": 3,
            "segment_size_bytes": SEGMENT,
            "extra": 1,
        },
    ],
)
def test_chunk_plan_from_json_rejects_bad_documents(doc: object) -> None:
    """Malformed or inconsistent plan documents are BadRequest."""
    with pytest.raises(BadRequest):
        ChunkPlan.from_json(doc)


def test_chunk_plan_to_json_layout() -> None:
    """The JSON layout is the documented one (docs/placement.md)."""
    assert plan(10, min_chunks=3).to_json() == {
        "version": 1,
        "size_bytes": 10,
        "chunk_size_bytes": 4,
        "chunk_count": 3,
        "segment_size_bytes": SEGMENT,
    }


def test_segment_ranges_empty_is_one_empty_segment() -> None:
    """A zero-length byte string is one empty segment."""
    assert segment_ranges(0, SEGMENT) == [(0, 0)]


def test_segment_ranges_boundaries() -> None:
    """Exact multiples give full segments; one byte more adds a 1-byte tail."""
    assert segment_ranges(1, SEGMENT) == [(0, 1)]
    assert segment_ranges(SEGMENT, SEGMENT) == [(0, SEGMENT)]
    assert segment_ranges(SEGMENT + 1, SEGMENT) == [(0, SEGMENT), (SEGMENT, SEGMENT + 1)]
    assert len(segment_ranges(CHUNK + 16, SEGMENT)) == CHUNK // SEGMENT + 1


@settings(max_examples=300, deadline=None)
@given(segment=st.integers(MIN_SEGMENT_SIZE_BYTES, 4 * SEGMENT), data=st.data())
def test_segment_ranges_cover_exactly(segment: int, data: st.DataObject) -> None:
    """Segments are non-empty (unless length is 0), at most segment bytes, and tile [0, len)."""
    length = data.draw(st.integers(0, min(8 * CHUNK, segment * MAX_SEGMENTS_PER_CHUNK)))
    rs = segment_ranges(length, segment)
    assert rs[0][0] == 0
    assert rs[-1][1] == length
    for (_, end), (start, _) in zip(rs, rs[1:], strict=False):
        assert end == start
    assert all(0 < e - s <= segment for s, e in rs) or rs == [(0, 0)]


def test_segment_ranges_rejects_too_many_segments_and_bad_values() -> None:
    """More than MAX_SEGMENTS_PER_CHUNK segments, a negative length or a tiny segment are
    BadRequest."""
    with pytest.raises(BadRequest, match="segments"):
        segment_ranges(MIN_SEGMENT_SIZE_BYTES * MAX_SEGMENTS_PER_CHUNK + 1, MIN_SEGMENT_SIZE_BYTES)
    with pytest.raises(BadRequest, match="length"):
        segment_ranges(-1, SEGMENT)
    with pytest.raises(BadRequest, match="segment_size_bytes"):
        segment_ranges(10, 1)


@pytest.mark.parametrize(
    ("n", "r", "expected"),
    [(3, 2, 3), (4, 2, 2), (5, 2, 2), (2, 1, 2), (6, 5, 6), (100, 2, 2), (10, 5, 2), (9, 5, 3)],
)
def test_min_chunks_for_placement_values(n: int, r: int, expected: int) -> None:
    """ceil(N / (N - R)) for a few hand-checked cases."""
    assert min_chunks_for_placement(n, r) == expected


def test_min_chunks_for_placement_too_few_peers() -> None:
    """N < R + 1 raises TooFewPeers naming N and R; replicas < 1 is BadRequest."""
    with pytest.raises(TooFewPeers) as info:
        min_chunks_for_placement(2, 2)
    assert (info.value.eligible_peers, info.value.replicas) == (2, 2)
    with pytest.raises(BadRequest, match="replicas"):
        min_chunks_for_placement(5, 0)
