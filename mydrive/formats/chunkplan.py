"""How a file is cut: into chunks (the unit of encryption and placement), each chunk's
ciphertext into segments (the unit of verification and resend).

This module owns the ``ChunkPlan`` JSON layout; docs/placement.md describes it.
Everything here is plain arithmetic on sizes: no bytes, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from mydrive.errors import BadRequest, TooFewPeers

# 8 MiB, not 4: per chunk a receiver pays a commit (files, syncs, a rename) and an owner a
# fetch call and a window slot, so larger chunks cut a put's CPU and let four chunks in
# flight carry a get at full speed; memory grows with chunk size x chunks in flight
# (docs/benchmarks.md, "Per-chunk costs").
DEFAULT_CHUNK_SIZE_BYTES = 8 * 1024 * 1024
DEFAULT_SEGMENT_SIZE_BYTES = 256 * 1024
MAX_CHUNK_SIZE_BYTES = 64 * 1024 * 1024
MIN_SEGMENT_SIZE_BYTES = 4 * 1024
MAX_SEGMENTS_PER_CHUNK = 4096

# Each chunk's ciphertext is its plaintext plus a 16-byte AES-GCM tag
# (mydrive/crypto/primitives.py owns that format); counted here only so that the
# segment-count limit holds for the ciphertext.
CHUNK_TAG_BYTES = 16

# min_chunks_for_placement never exceeds replicas + 1, so this is generous; it bounds how many
# (possibly empty) chunks a request or a stored plan can ask for.
MAX_MIN_CHUNKS = 1024

PLAN_FORMAT_VERSION = 1
_PLAN_KEYS = frozenset(
    {"version", "size_bytes", "chunk_size_bytes", "chunk_count", "segment_size_bytes"}
)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _is_int(value: object) -> bool:
    # bool is an int subclass; True must not pass as a size.
    return isinstance(value, int) and not isinstance(value, bool)


def _int_in(name: str, value: object, low: int, high: int | None = None) -> int:
    """``value`` as an int in [low, high], or BadRequest naming it."""
    in_range = (
        isinstance(value, int)
        and not isinstance(value, bool)
        and value >= low
        and (high is None or value <= high)
    )
    if in_range:
        assert isinstance(value, int)
        return value
    bound = f"[{low}, {high}]" if high is not None else f">= {low}"
    raise BadRequest(f"{name}={value!r} must be an integer {bound}")


def _natural_chunk_count(size_bytes: int, chunk_size_bytes: int) -> int:
    return max(1, _ceil_div(size_bytes, chunk_size_bytes))


def _check_segment_size(segment_size_bytes: object) -> int:
    return _int_in(
        "segment_size_bytes", segment_size_bytes, MIN_SEGMENT_SIZE_BYTES, MAX_CHUNK_SIZE_BYTES
    )


def _check_chunk_size(chunk_size_bytes: object) -> int:
    return _int_in("chunk_size_bytes", chunk_size_bytes, 1, MAX_CHUNK_SIZE_BYTES)


def _check_size(size_bytes: object) -> int:
    return _int_in("size_bytes", size_bytes, 0)


def _check_segments_per_chunk(chunk_size_bytes: int, segment_size_bytes: int) -> None:
    segments = _ceil_div(chunk_size_bytes + CHUNK_TAG_BYTES, segment_size_bytes)
    if segments > MAX_SEGMENTS_PER_CHUNK:
        raise BadRequest(
            f"chunk_size_bytes={chunk_size_bytes} with segment_size_bytes={segment_size_bytes} "
            f"gives {segments} segments per chunk; at most {MAX_SEGMENTS_PER_CHUNK} allowed"
        )


@dataclass(frozen=True)
class ChunkPlan:
    """The cut of one file. Chunk i covers plaintext [i*chunk_size, min((i+1)*chunk_size, size));
    when a small file was expanded to more chunks than it has bytes for, tail chunks are empty."""

    size_bytes: int
    chunk_size_bytes: int
    chunk_count: int
    segment_size_bytes: int

    def __post_init__(self) -> None:
        # Plans also arrive from metadata documents written by other peers: validate always.
        size = _check_size(self.size_bytes)
        chunk = _check_chunk_size(self.chunk_size_bytes)
        _check_segments_per_chunk(chunk, _check_segment_size(self.segment_size_bytes))
        count = self.chunk_count
        natural = _natural_chunk_count(size, chunk)
        if not _is_int(count) or count < natural:
            raise BadRequest(
                f"chunk_count={count!r} must be an integer >= {natural} to cover "
                f"size_bytes={size} with chunk_size_bytes={chunk}"
            )
        if count > natural and (count > MAX_MIN_CHUNKS or chunk != max(1, _ceil_div(size, count))):
            # Only plan_chunks' expansion of a small file yields more chunks than needed.
            raise BadRequest(
                f"chunk_count={count} exceeds the {natural} chunk(s) size_bytes={size} needs and "
                f"is not an expansion to at most {MAX_MIN_CHUNKS} chunks of "
                f"chunk_size_bytes={max(1, _ceil_div(size, count))}"
            )

    def chunk_range(self, index: int) -> tuple[int, int]:
        """Plaintext [start, end) of chunk ``index``; start == end for an empty tail chunk."""
        if not _is_int(index) or not 0 <= index < self.chunk_count:
            raise BadRequest(f"chunk index {index!r} not in [0, {self.chunk_count})")
        start = min(index * self.chunk_size_bytes, self.size_bytes)
        end = min(start + self.chunk_size_bytes, self.size_bytes)
        return start, end

    def plaintext_length(self, index: int) -> int:
        start, end = self.chunk_range(index)
        return end - start

    def to_json(self) -> dict[str, int]:
        return {
            "version": PLAN_FORMAT_VERSION,
            "size_bytes": self.size_bytes,
            "chunk_size_bytes": self.chunk_size_bytes,
            "chunk_count": self.chunk_count,
            "segment_size_bytes": self.segment_size_bytes,
        }

    @classmethod
    def from_json(cls, doc: object) -> ChunkPlan:
        if not isinstance(doc, Mapping):
            raise BadRequest(f"chunk plan must be a JSON object, got {type(doc).__name__}")
        keys = set(doc)
        if keys != _PLAN_KEYS:
            missing = sorted(str(k) for k in _PLAN_KEYS - keys)
            extra = sorted(str(k) for k in keys - _PLAN_KEYS)
            raise BadRequest(f"chunk plan keys: missing {missing}, unexpected {extra}")
        if doc["version"] != PLAN_FORMAT_VERSION or not _is_int(doc["version"]):
            raise BadRequest(
                f"chunk plan version {doc['version']!r} unsupported "
                f"(expected {PLAN_FORMAT_VERSION})"
            )
        return cls(
            size_bytes=doc["size_bytes"],
            chunk_size_bytes=doc["chunk_size_bytes"],
            chunk_count=doc["chunk_count"],
            segment_size_bytes=doc["segment_size_bytes"],
        )


def plan_chunks(
    size_bytes: int, *, chunk_size_bytes: int, segment_size_bytes: int, min_chunks: int
) -> ChunkPlan:
    """Cut ``size_bytes`` into chunks of ``chunk_size_bytes``, or into ``min_chunks`` smaller
    chunks when the natural count is lower (so a small file can still be placed)."""
    size = _check_size(size_bytes)
    chunk = _check_chunk_size(chunk_size_bytes)
    segment = _check_segment_size(segment_size_bytes)
    if segment > chunk:
        raise BadRequest(f"segment_size_bytes={segment} must not exceed chunk_size_bytes={chunk}")
    _check_segments_per_chunk(chunk, segment)
    _int_in("min_chunks", min_chunks, 1, MAX_MIN_CHUNKS)
    count = _natural_chunk_count(size, chunk)
    if count < min_chunks:
        count = min_chunks
        chunk = max(1, _ceil_div(size, min_chunks))
    return ChunkPlan(
        size_bytes=size, chunk_size_bytes=chunk, chunk_count=count, segment_size_bytes=segment
    )


def segment_ranges(length: int, segment_size_bytes: int) -> list[tuple[int, int]]:
    """[start, end) of each segment of a chunk ciphertext of ``length`` bytes; they cover
    [0, length) exactly, in order. Length 0 gives one empty segment so every chunk has one."""
    segment = _check_segment_size(segment_size_bytes)
    _int_in("length", length, 0)
    count = max(1, _ceil_div(length, segment))
    if count > MAX_SEGMENTS_PER_CHUNK:
        raise BadRequest(
            f"length={length} with segment_size_bytes={segment} gives {count} segments; "
            f"at most {MAX_SEGMENTS_PER_CHUNK} allowed"
        )
    return [(start, min(start + segment, length)) for start in range(0, count * segment, segment)]


def min_chunks_for_placement(eligible_peers: int, replicas: int) -> int:
    """Smallest chunk count C with N*(C-1) >= C*R, i.e. ceil(N / (N - R)): enough chunks that
    R replicas of each fit on N peers with no peer holding all C (proof in docs/placement.md)."""
    _int_in("replicas", replicas, 1)
    _int_in("eligible_peers", eligible_peers, 0)
    if eligible_peers < replicas + 1:
        # No chunk count works, so report chunks=0 ("any number").
        raise TooFewPeers(
            eligible_peers, replicas, 0, reason="no number of chunks can satisfy N*(C-1) >= C*R"
        )
    return _ceil_div(eligible_peers, eligible_peers - replicas)
