"""runtime/allocator: after tuning, a chunk-sized buffer comes from the heap, not a fresh
mapping (which faults its pages in again on every allocation)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

_PROBE = textwrap.dedent("""
    import ctypes, sys
    from mydrive.runtime.allocator import tune_for_transfers
    tuned = tune_for_transfers() if sys.argv[1] == "tune" else False
    from mydrive.formats.chunkplan import DEFAULT_CHUNK_SIZE_BYTES
    # A chunk and a bit (a fetched chunk's framing, a decrypted chunk's slack) in a fresh
    # process: with 8 MiB chunks and an 8 MiB threshold it was mapped on its own each time.
    buf = bytearray(DEFAULT_CHUNK_SIZE_BYTES + 64 * 1024)
    address = ctypes.addressof((ctypes.c_char * len(buf)).from_buffer(buf))
    heap = [line.split()[0] for line in open("/proc/self/maps") if line.rstrip().endswith("[heap]")]
    low, high = (int(x, 16) for x in heap[0].split("-"))
    print(tuned, low <= address < high)
""")


def _probe(mode: str) -> str:
    done = subprocess.run([sys.executable, "-c", _PROBE, mode], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, check=True)
    return done.stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux") or not Path("/proc/self/maps").exists(),
                    reason="glibc's heap is seen in /proc/self/maps on Linux only")
def test_tuned_process_keeps_chunk_buffers_in_the_heap() -> None:
    assert _probe("tune") == "True True"
    assert _probe("none") == "False False"  # glibc's default: mapped on its own


_ARENAS = textwrap.dedent("""
    import ctypes, os, sys, threading
    from mydrive.runtime.allocator import tune_for_transfers
    if sys.argv[1] == "tune":
        assert tune_for_transfers()
    barrier = threading.Barrier(8)
    held = []
    def work():
        barrier.wait()  # all alive at once, so none inherits an arena another has left
        held.append([bytearray(300 * 1024) for _ in range(4)])
        barrier.wait()
    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads: t.start()
    for t in threads: t.join()
    os.dup2(1, 2)  # malloc_stats writes to stderr: one "Arena N:" line per arena
    ctypes.CDLL(None).malloc_stats()
""")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_stats")
def test_tuned_process_allocates_from_at_most_two_arenas() -> None:
    def arenas(mode: str) -> int:
        done = subprocess.run([sys.executable, "-c", _ARENAS, mode], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=True)
        return sum(line.startswith("Arena ") for line in done.stdout.splitlines())

    assert arenas("tune") <= 2
    assert arenas("none") > 2  # glibc's default: an arena per thread, up to 8 per core
