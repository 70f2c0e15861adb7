"""Shared by every phase: sizes, test files, medians, and the machine and commit measured on."""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
GiB = 1024 * MiB
ROOT = Path(__file__).resolve().parent.parent
WRITE_BLOCK_BYTES = 8 * MiB


def random_file(path: Path, size_bytes: int) -> Path:
    """A file of ``size_bytes`` random bytes (incompressible, like encrypted data)."""
    with open(path, "wb") as f:
        left = size_bytes
        while left:
            n = min(left, WRITE_BLOCK_BYTES)
            f.write(os.urandom(n))
            left -= n
    return path


def median(values: Iterable[float]) -> float:
    return float(statistics.median(list(values)))


def print_ab_medians(size_mib: int, runs: int, results: dict[str, dict[str, list[float]]]
                     ) -> None:
    """An A/B's figures as JSON on stdout: each variant's medians, then every run's value."""
    import json

    summary = {name: {k: round(median(v), 3) for k, v in row.items()}
               for name, row in results.items()}
    print(json.dumps({"size_mib": size_mib, "runs": runs, "load_avg": os.getloadavg()[0],
                      "median": summary, "all": results}, indent=1))


def mbps(size_bytes: int, seconds: float) -> float:
    """Decimal megabytes per second, as scp and most tools print them."""
    return size_bytes / seconds / 1e6


def per_gib(cpu_s: float, size_bytes: int) -> float:
    return cpu_s / (size_bytes / GiB)


def machine() -> dict[str, Any]:
    """What the figures were measured on: cores, CPU model, RAM, kernel, Python."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {"nproc": os.cpu_count(), "cpu_model": model,
            "ram_gib": round(ram_bytes / GiB, 1), "kernel": platform.release(),
            "python": platform.python_version()}


def commit() -> dict[str, Any]:
    """The commit measured (HEAD) and whether the working tree differed from it."""
    def git(*args: str) -> str:
        result = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                timeout=30)
        return result.stdout.strip()

    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "mydrive")
    return {"head": git("rev-parse", "HEAD"), "mydrive_modified": bool(dirty)}


def now_utc() -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
