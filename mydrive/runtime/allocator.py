"""Keep glibc from mapping and unmapping every large buffer a transfer allocates.

An upload allocates a 256 KiB message per segment and replica, on several threads. Past
glibc's mmap threshold such blocks are mapped when allocated and unmapped when freed (and
freed heap tops are trimmed), so their pages fault in again every time: a 512 MiB put took
about 300,000 minor page faults and 1.7 s of kernel time, 43,000 and 1.0 s with raised
thresholds, and 15 % less CPU in all (docs/benchmarks.md, "Client-side optimisations").
``upload_file`` sets them, and the receiver service for the segments it is sent (peer-side
section); a download measured no steady gain (its buffers are reused already). At most two
arenas keep what the freed buffers hold bounded whatever the number of threads.

Only on Linux with glibc (``mallopt`` and ``gnu_get_libc_version`` present); elsewhere
(Windows, macOS, musl) nothing changes. Process-wide and idempotent.
"""

from __future__ import annotations

import ctypes
import sys
import threading

# mallopt parameters, from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8

# Larger than a chunk (8 MiB by default) and a segment message, so both come from the heap:
# glibc's largest (32 MiB on 64-bit). At 8 MiB, once chunks were 8 MiB, every chunk-sized
# buffer was mapped and faulted in afresh: the SFTP server's get took 376,000 page faults
# per 512 MiB against 34,000 with 4 MiB chunks (docs/sftp.md).
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
# Freed heap tops below this stay mapped for the next chunk instead of faulting in again
# (measured as good as 256 MiB, with less memory kept).
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024
# With buffers kept, every thread's arena keeps its own (glibc makes up to 8 per core): a
# receiver's 32 gRPC workers then held 30 MiB more at its peak than with two arenas, for no
# less CPU (benchmarks/grpc_server_ab.py, docs/benchmarks.md).
ARENA_MAX = 2

_lock = threading.Lock()
_tuned = False


def tune_for_transfers() -> bool:
    """Raise glibc's mmap and trim thresholds and cap its arenas, once per process (before
    the threads that allocate start: an arena is made for a thread the first time it
    allocates); True if they were set."""
    global _tuned
    with _lock:
        if _tuned:
            return True
        if not sys.platform.startswith("linux"):
            return False
        try:
            libc = ctypes.CDLL(None)
            mallopt = libc.mallopt
            libc.gnu_get_libc_version  # noqa: B018 - glibc's mallopt, not a look-alike's
        except (OSError, AttributeError):
            return False
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        _tuned = all(mallopt(option, value) for option, value in (
            (_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES), (_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES),
            (_M_ARENA_MAX, ARENA_MAX)))
        return _tuned
