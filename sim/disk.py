"""The simulated disk under each peer: a real directory, and what the simulator does to it.

The chunk store is the product's (``mydrive.storage.chunkstore``) and writes real files, so
each simulated peer gets a directory of its own under the run's work directory (on tmpfs
when there is one: fsync costs nothing there). The simulator's disk faults act on those
files the way the world would:

* **bit-rot** flips one ciphertext byte of a committed chunk (the chaos harness's ``bitrot``,
  with the same draws from the same seeded generator);
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

from chaos.checkers import open_store
from mydrive.storage.chunkstore import PART_TRAILER_TAG

MAX_ROT_PER_STEP = 1024


def committed_chunks(store_dir: Path) -> list[bytes]:
    """The ids of every committed chunk, sorted (iteration order never depends on the OS),
    as the peer's chunk store lists them."""
    return sorted(open_store(store_dir).chunk_ids())


def bitrot(store_dir: Path, rng: random.Random, count: int) -> list[tuple[bytes, int]]:
    """Flip one byte of ciphertext at a seeded offset in ``count`` seeded committed chunks
    (the chaos harness's draws: ``sample`` over the sorted chunk ids, then ``randrange``
    over each chunk's ciphertext, through the store's ``rot_ciphertext``, so whatever the
    store keeps next to the ciphertext is never hit); returns (chunk id, offset) of each."""
    store = open_store(store_dir)
    held = sorted(store.chunk_ids())
    rotted: list[tuple[bytes, int]] = []
    for chunk_id in rng.sample(held, min(count, len(held), MAX_ROT_PER_STEP)):
        size = store.ciphertext_extent(chunk_id)[1]
        if not size:
            continue
        offset = rng.randrange(size)
        store.rot_ciphertext(chunk_id, offset)
        rotted.append((chunk_id, offset))
    return rotted


def power_loss(store_dir: Path, rng: random.Random) -> int:
    """Lose unsynced writes: zero each segment of every upload in progress with probability
    1/2; returns how many segments were lost. The segments are those of the header in the
    ``.part``'s resume trailer (written when the upload began, kept here: a lost trailer
    only makes the next upload start afresh, which the store's own tests cover)."""
    lost = 0
    for part in sorted((store_dir / "incoming").glob("*.part")):
        data = bytearray(part.read_bytes())
        sizes = _resume_sizes(bytes(data))
        if sizes is None:
            part.write_bytes(bytes(len(data)))  # no readable trailer: nothing of it survives
            lost += 1
            continue
        chunk_size, segment_size = sizes
        for start in range(0, chunk_size, segment_size):
            if rng.random() < 0.5:
                end = min(start + segment_size, chunk_size)
                data[start:end] = bytes(end - start)
                lost += 1
        part.write_bytes(bytes(data))
    return lost


def _resume_sizes(part: bytes) -> tuple[int, int] | None:
    """(chunk size, segment size) from a ``.part``'s resume trailer (the format of
    ``mydrive.storage.chunkstore``: header JSON, its length as 8 bytes little-endian, the
    tag); None if there is none that fits."""
    tag = PART_TRAILER_TAG
    if len(part) < len(tag) + 8 or not part.endswith(tag):
        return None
    doc_end = len(part) - len(tag) - 8
    doc_start = doc_end - int.from_bytes(part[doc_end:doc_end + 8], "little")
    try:
        header = json.loads(part[max(doc_start, 0):doc_end])
        chunk_size = int(header["chunk_size_bytes"])
        segment_size = int(header["segment_size_bytes"])
    except (ValueError, KeyError, TypeError):
        return None
    if segment_size <= 0 or chunk_size != doc_start:  # the chunk's bytes, then the trailer
        return None
    return chunk_size, segment_size


def wipe(store_dir: Path) -> None:
    """The disk is gone: the peer comes back empty."""
    shutil.rmtree(store_dir, ignore_errors=True)
    store_dir.mkdir(parents=True, exist_ok=True)
