"""Phase 4: where the CPU seconds go, from py-spy samples of a put and a get.

The client runs under ``py-spy record`` and, at the same time, py-spy attaches to every
receiver and sender of the network (a get may be carried out by the owner's own receiver
service rather than the CLI process). Two passes:

- ``gil``: only the thread holding the GIL is sampled, so the samples are the Python-level
  work that serializes a process (C code that releases the GIL, such as gRPC's core threads
  and the kernel, is not in it: compare ``cpu_s_sampled`` with ``cpu_s_measured`` from /proc).
- ``active``: every thread py-spy does not see idle, which includes threads blocked in disk
  I/O (fsync, write): where the wall time of busy threads goes.

Sampling is ``--nonblocking``: in its default (blocking) mode py-spy counted the idle gRPC
worker threads of the services as running here (about 20 x the CPU seconds /proc counted). The raw
(collapsed-stack) files are kept next to the JSON; the JSON lists, per process kind, the
functions with the most samples on top of the stack ("self") and the share of samples in a
few families of work (encryption, hashing, gRPC, disk, ...).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.mydrive_side import MydriveNetwork
from benchmarks.procs import session_cpu_s

PY_SPY = Path(sys.executable).parent / "py-spy"  # installed next to this Python
RATE_HZ = 100
MODES = {"gil": ["--gil"], "active": []}
PROFILED_KINDS = ("receiver", "sender")
TOP_FUNCTIONS = 12

# Families of work, by the file the sampled leaf frame is in (first match wins).
FAMILIES: list[tuple[str, tuple[str, ...]]] = [
    ("AES-GCM (cryptography)", ("cryptography/",)),
    ("hashing (blake3/hashlib)", ("blake3", "hashlib", "formats/digest.py")),
    ("gRPC and protobuf", ("grpc/", "grpc_", "protobuf", "google/")),
    ("threads, queues, futures", ("threading.py", "queue.py", "concurrent/")),
    ("mydrive transport", ("mydrive/transport/",)),
    ("mydrive engine", ("mydrive/engine/",)),
    ("mydrive storage", ("mydrive/storage/",)),
    ("mydrive formats/crypto", ("mydrive/formats/", "mydrive/crypto/")),
    ("mydrive other", ("mydrive/",)),
    ("key derivation, start-up, imports", ("argon2", "importlib", "<frozen", "click/")),
]


def _frame_file(frame: str) -> str:
    return frame.rsplit("(", 1)[-1].rstrip(")") if "(" in frame else frame


def summarize(raw: Path) -> dict[str, Any]:
    """Top self-time functions and families from a py-spy raw (collapsed) file."""
    self_counts: Counter[str] = Counter()
    families: Counter[str] = Counter()
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        leaf = stack.split(";")[-1]
        # "function (path/to/file.py:123)" -> "function (file.py)" keeps names short.
        name, _, where = leaf.partition(" (")
        path = where.rstrip(")").split(":")[0]
        short = "/".join(path.split("/")[-2:])
        self_counts[f"{name} ({short})"] += count
        file = _frame_file(leaf)
        family = next((f for f, keys in FAMILIES if any(k in file for k in keys)), "other")
        families[family] += count
        total += count
    return {
        "samples": total,
        "cpu_s_sampled": round(total / RATE_HZ, 2),
        "top_self": [{"function": f, "share": round(c / total, 3)}
                     for f, c in self_counts.most_common(TOP_FUNCTIONS)] if total else [],
        "families": {f: round(c / total, 3) for f, c in families.most_common()} if total else {},
    }


def _attach(pid: int, out: Path, flags: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen([str(PY_SPY), "record", "--pid", str(pid), "--rate", str(RATE_HZ),
                             "--format", "raw", "--nonblocking", *flags, "--output", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def _profile(net: MydriveNetwork, args: list[str], tag: str, out_dir: Path,
             flags: list[str]) -> dict[str, Any]:
    """Profile one client command and, meanwhile, every receiver and sender of the network
    (the owner's own receiver may do the work of a get, other peers' that of a put)."""
    services = [s for s in net.services() if s["kind"] in PROFILED_KINDS]
    cpu_before = {k: sum(session_cpu_s(s["pid"]) for s in services if s["kind"] == k)
                  for k in PROFILED_KINDS}
    attached = {(s["peer"], s["kind"]): _attach(
        s["pid"], out_dir / f"{tag}-{s['peer']}-{s['kind']}.txt", flags) for s in services}
    time.sleep(1.0)  # let py-spy attach before the transfer starts
    client_raw = out_dir / f"{tag}-client.txt"
    result = subprocess.run([str(PY_SPY), "record", "--rate", str(RATE_HZ), "--format", "raw",
                             "--nonblocking", *flags, "--output", str(client_raw), "--",
                             *args],
                            env=net.env, capture_output=True, text=True, timeout=3600)
    cpu_after = {k: sum(session_cpu_s(s["pid"]) for s in services if s["kind"] == k)
                 for k in PROFILED_KINDS}
    for proc in attached.values():
        os.kill(proc.pid, signal.SIGINT)  # py-spy writes its file on SIGINT
    for proc in attached.values():
        proc.wait(timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"py-spy {tag} failed: {result.stderr[-2000:]}")
    doc: dict[str, Any] = {"client": summarize(client_raw)}
    for kind in PROFILED_KINDS:
        merged = out_dir / f"{tag}-{kind}s.txt"
        with open(merged, "w") as f:
            for peer, k in attached:
                part = out_dir / f"{tag}-{peer}-{k}.txt"
                if k == kind and part.exists():
                    f.write(part.read_text(errors="replace"))
                    part.unlink()
        doc[f"{kind}s"] = {**summarize(merged),
                           "cpu_s_measured": round(cpu_after[kind] - cpu_before[kind], 2)}
    return doc


def run(net: MydriveNetwork, src: Path, *, out_dir: Path, work: Path,
        log: Callable[[str], None]) -> dict[str, Any]:
    if not PY_SPY.exists():
        raise RuntimeError(f"{PY_SPY} missing: run benchmarks/setup.sh (py-spy)")
    out_dir.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"size_bytes": src.stat().st_size, "rate_hz": RATE_HZ}
    for mode, flags in MODES.items():
        remote = f"/bench/profile-{mode}"
        put = _profile(net, net.put_args(src, remote), f"{mode}-put", out_dir, flags)
        get = _profile(net, net.get_args(remote, work / "profile-out"), f"{mode}-get",
                       out_dir, flags)
        log(f"profiled ({mode}): put client {put['client']['cpu_s_sampled']} s sampled, "
            f"get client {get['client']['cpu_s_sampled']} s")
        net.rm(remote)
        doc[mode] = {"put": put, "get": get}
    doc["raw_files"] = sorted(p.name for p in out_dir.glob("*.txt"))
    return doc
