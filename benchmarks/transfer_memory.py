"""Throughput and memory of put/get on a local 5-peer network, side by side with `cp`.

Runs mydrive and a plain copy of the same file in one run and reports ratios (absolute times
on shared machines are noisy). Memory: the peak RSS of the `mydrive put`/`get` process for
two file sizes; flat memory means the ratio stays near 1 while the file grows 4x.

    .venv/bin/python benchmarks/transfer_memory.py [--sizes-mib 64 256] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mydrive.node import cluster  # noqa: E402

MiB = 1024 * 1024


def run_measured(args: list[str], env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    if status != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr.read().decode()}")
    return elapsed, int(usage.ru_maxrss)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes-mib", type=int, nargs="+", default=[64, 256])
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "net"
        cluster.create(home, 5)
        cluster.start(home)
        env = {**os.environ, "MYDRIVE_PEER": str(home / "peer-0"), "MYDRIVE_USER": "bench",
               "MYDRIVE_PASSPHRASE": "bench passphrase"}
        env.pop("MYDRIVE_FAULTS", None)
        md = [sys.executable, "-m", "mydrive"]
        try:
            run_measured(md + ["user", "create"], env)
            for size_mib in opts.sizes_mib:
                src = Path(tmp) / f"src-{size_mib}"
                with open(src, "wb") as f:
                    for _ in range(size_mib):
                        f.write(os.urandom(MiB))
                t0 = time.perf_counter()
                shutil.copyfile(src, Path(tmp) / "copy")
                cp_s = time.perf_counter() - t0
                put_s, put_kib = run_measured(md + ["put", str(src), f"/b/{size_mib}"], env)
                get_s, get_kib = run_measured(
                    md + ["get", f"/b/{size_mib}", "--out", str(Path(tmp) / "out")], env)
                results.append({"size_mib": size_mib, "cp_s": round(cp_s, 3),
                                "put_s": round(put_s, 3), "get_s": round(get_s, 3),
                                "put_MBps": round(size_mib * MiB / put_s / 1e6, 1),
                                "get_MBps": round(size_mib * MiB / get_s / 1e6, 1),
                                "put_vs_cp": round(put_s / cp_s, 1),
                                "get_vs_cp": round(get_s / cp_s, 1),
                                "put_peak_rss_mib": round(put_kib / 1024, 1),
                                "get_peak_rss_mib": round(get_kib / 1024, 1)})
                src.unlink()
        finally:
            cluster.stop(home)
    first, last = results[0], results[-1]
    summary = {"results": results,
               "put_rss_ratio_largest_vs_smallest":
                   round(last["put_peak_rss_mib"] / first["put_peak_rss_mib"], 2),
               "get_rss_ratio_largest_vs_smallest":
                   round(last["get_peak_rss_mib"] / first["get_peak_rss_mib"], 2)}
    if opts.json:
        print(json.dumps(summary, indent=2))
        return
    for r in results:
        print(f"{r['size_mib']:>5} MiB  put {r['put_MBps']:>7} MB/s ({r['put_vs_cp']}x cp)  "
              f"get {r['get_MBps']:>7} MB/s ({r['get_vs_cp']}x cp)  "
              f"peak RSS put {r['put_peak_rss_mib']} MiB, get {r['get_peak_rss_mib']} MiB")
    print(f"peak RSS ratio {last['size_mib']}/{first['size_mib']} MiB: "
          f"put {summary['put_rss_ratio_largest_vs_smallest']}, "
          f"get {summary['get_rss_ratio_largest_vs_smallest']} (flat ≈ 1)")


if __name__ == "__main__":
    main()
