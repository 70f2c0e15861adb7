"""Knobs of the transfer engine (sizes, replicas, parallelism)."""

from __future__ import annotations

from dataclasses import dataclass

from mydrive.formats.chunkplan import DEFAULT_CHUNK_SIZE_BYTES, DEFAULT_SEGMENT_SIZE_BYTES


@dataclass(frozen=True)
class TransferSettings:
    chunk_size_bytes: int = DEFAULT_CHUNK_SIZE_BYTES
    segment_size_bytes: int = DEFAULT_SEGMENT_SIZE_BYTES
    replicas: int = 2
    # Chunks encrypted and in flight at once: bounds memory at about
    # 2 * max_inflight_chunks * chunk_size_bytes whatever the file size.
    max_inflight_chunks: int = 4
    max_rounds: int = 8  # resend rounds per chunk and replica before giving up on that peer
    # A download asks every replica once; replicas that were unreachable get asked again
    # after a pause, up to fetch_passes in all (a peer restarting is back within seconds).
    fetch_passes: int = 3
    # Before placing a file, every eligible peer is probed; the unreachable ones are left out
    # so the chunk count and placement fit the peers that can actually take chunks.
    probe_timeout_s: float = 5.0
    fetch_retry_pause_s: float = 1.0
