"""The simulated disk under each peer: a real directory, and what the simulator does to it.

The chunk store is the product's (``mydrive.storage.chunkstore``) and writes real files, so
each simulated peer gets a directory of its own under the run's work directory (on tmpfs
when there is one: fsync costs nothing there). The simulator's disk faults act on those
files the way the world would:

* **bit-rot** flips one byte of a committed chunk file (the chaos harness's ``bitrot``, with
  the same draws from the same seeded generator);
* **power loss** loses the writes that were never synced: the store fsyncs a chunk before
  the rename that commits it (read in ``PendingChunk.commit``), so what can go is the
  content of uploads in progress (``incoming/*.part``), each segment's bytes kept or zeroed
  by a seeded draw; a process kill (SIGKILL) loses nothing on disk, like the kernel's page
  cache;
* **disk loss** empties the directory (a peer that comes back with a new disk);
* **capacity** is the store's ``capacity_bytes``; ``fill`` leaves no room for new chunks.

The model trusts the chunk store's fsync discipline instead of tracing fsync calls (the store
is not refactored for the simulator); docs/simulator.md says so.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

MAX_ROT_PER_STEP = 1024


def committed_chunk_files(store_dir: Path) -> list[Path]:
    """Every committed chunk file, sorted (iteration order never depends on the OS)."""
    return sorted((store_dir / "chunks").glob("*/*.chunk"))


def bitrot(store_dir: Path, rng: random.Random, count: int) -> list[tuple[bytes, int]]:
    """Flip one byte at a seeded offset in ``count`` seeded committed chunks (the chaos
    harness's draws: ``sample`` over the sorted files, then ``randrange`` per file);
    returns (chunk id, offset) of each."""
    files = committed_chunk_files(store_dir)
    rotted: list[tuple[bytes, int]] = []
    for path in rng.sample(files, min(count, len(files), MAX_ROT_PER_STEP)):
        data = bytearray(path.read_bytes())
        if not data:
            continue
        offset = rng.randrange(len(data))
        data[offset] ^= 0xFF
        path.write_bytes(bytes(data))
        rotted.append((bytes.fromhex(path.stem), offset))
    return rotted


def power_loss(store_dir: Path, rng: random.Random) -> int:
    """Lose unsynced writes: zero each segment of every upload in progress with probability
    1/2; returns how many segments were lost."""
    lost = 0
    for part in sorted((store_dir / "incoming").glob("*.part")):
        hdr = part.with_suffix(".hdr")
        try:
            segment_size = int(json.loads(hdr.read_text())["segment_size_bytes"])
        except (OSError, ValueError, KeyError, TypeError):
            segment_size = 0
        data = bytearray(part.read_bytes())
        if segment_size <= 0:
            part.write_bytes(bytes(len(data)))  # no header synced: nothing of it survives
            lost += 1
            continue
        for start in range(0, len(data), segment_size):
            if rng.random() < 0.5:
                end = min(start + segment_size, len(data))
                data[start:end] = bytes(end - start)
                lost += 1
        part.write_bytes(bytes(data))
    return lost


def wipe(store_dir: Path) -> None:
    """The disk is gone: the peer comes back empty."""
    shutil.rmtree(store_dir, ignore_errors=True)
    store_dir.mkdir(parents=True, exist_ok=True)
