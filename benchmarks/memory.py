"""Phase 2: peak RSS of the client and of each kind of peer process, per file size.

Flat memory means the peak does not grow with the file: the ratio of the peak at the largest
size to the peak at the smallest is reported (1.00 is flat). The client's peak is its rusage
``ru_maxrss``; a peer process's is ``VmHWM``, reset before every transfer (the largest of
any one receiver, sender or nginx process is reported).
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import MiB, random_file
from benchmarks.mydrive_side import MydriveNetwork


def run(net: MydriveNetwork, sizes_mib: list[int], *, work: Path,
        log: Callable[[str], None]) -> dict[str, Any]:
    rows = []
    for size_mib in sizes_mib:
        src = random_file(work / f"rss-{size_mib}", size_mib * MiB)
        remote = f"/bench/rss-{size_mib}"
        try:
            resettable = net.reset_peaks()
            m_put, _ = net.put(src, remote)
            put_peers = net.peak_rss_by_kind()
            src.unlink()
            net.reset_peaks()
            out = work / "rss-out"
            m_get, _ = net.get(remote, out)
            get_peers = net.peak_rss_by_kind()
            shutil.rmtree(out, ignore_errors=True)
            net.rm(remote)
        finally:
            src.unlink(missing_ok=True)
        row = {"size_mib": size_mib, "peer_peaks_reset": resettable,
               "put": {"client": m_put.peak_rss_bytes, **put_peers},
               "get": {"client": m_get.peak_rss_bytes, **get_peers}}
        row_mib = {d: {k: round(v / MiB, 1) for k, v in row[d].items()} for d in ("put", "get")}
        rows.append({"size_mib": size_mib, "peer_peaks_reset": resettable,
                     "peak_rss_mib": row_mib})
        log(f"peak RSS at {size_mib} MiB: put {row_mib['put']}, get {row_mib['get']}")
    first, last = rows[0]["peak_rss_mib"], rows[-1]["peak_rss_mib"]
    growth = {d: {k: round(last[d][k] / first[d][k], 2) for k in last[d] if first[d].get(k)}
              for d in ("put", "get")}
    return {"sizes_mib": sizes_mib, "rows": rows,
            "growth_largest_over_smallest": growth}
