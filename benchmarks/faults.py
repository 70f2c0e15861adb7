"""Phase 3: what a fault costs. Resends under corrupt segments, and a replica lost mid-get.

Resend efficiency: ``mydrive put --fault-plan FILE`` corrupts a seeded share of segments on
their first send and logs each; the put's ``--json`` accounting lists every segment it sent
again. Both are turned into bytes (segment sizes from the put's chunk list) and divided:
1.00 means exactly the corrupt bytes were resent, nothing more. Slowdown is the put's time
against the same put with no fault plan, in the same run.

Failover: a baseline get, then the same get during which the sender that served most bytes
in the baseline is SIGKILLed once a third of the file has arrived; the ratio of the two
times. The killed sender is restarted (``cluster up`` again) before the next run.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import mbps, median
from benchmarks.mydrive_side import MydriveNetwork
from benchmarks.procs import Measured, run_measured

KILL_AT_FRACTION = 1 / 3


def _segment_bytes(put_doc: dict[str, Any]) -> dict[tuple[int, int], int]:
    """(chunk index, segment index) -> ciphertext bytes of that segment."""
    seg = int(put_doc["segment_size_bytes"])
    sizes = {}
    for c in put_doc["chunks"]:
        size = int(c["size_bytes"])
        for j in range(int(c["segments"])):
            sizes[(int(c["index"]), j)] = min(seg, size - j * seg)
    return sizes


def resend_figures(put_doc: dict[str, Any], fault_log: Path) -> dict[str, Any]:
    """Corrupt vs resent segments and bytes of one put, and whether the two sets match."""
    sizes = _segment_bytes(put_doc)
    index_of = {c["chunk_id"]: int(c["index"]) for c in put_doc["chunks"]}
    corrupt = set()
    if fault_log.exists():
        for line in fault_log.read_text().splitlines():
            if line.strip():
                e = json.loads(line)
                corrupt.add((index_of[e["chunk_id"]], int(e["segment"]), e["peer"]))
    resent = {(int(c), int(s), str(p))
              for c, s, p in put_doc["transfer"]["upload"]["resent"]}
    corrupt_bytes = sum(sizes[(c, s)] for c, s, _ in corrupt)
    resent_bytes = sum(sizes[(c, s)] for c, s, _ in resent)
    return {"corrupt_segments": len(corrupt), "resent_segments": len(resent),
            "corrupt_bytes": corrupt_bytes, "resent_bytes": resent_bytes,
            "resent_equals_corrupt": resent == corrupt,
            "ratio": round(resent_bytes / corrupt_bytes, 3) if corrupt_bytes else None}


def resend(net: MydriveNetwork, src: Path, rates: list[float], *, runs: int, work: Path,
           log: Callable[[str], None]) -> dict[str, Any]:
    size = src.stat().st_size
    samples: dict[float, list[dict[str, Any]]] = {r: [] for r in [0.0, *rates]}
    for i in range(runs):
        for rate in samples:
            plan = None
            fault_log = work / f"faults-{i}-{rate}.jsonl"
            fault_log.unlink(missing_ok=True)
            if rate > 0:
                plan = work / f"plan-{i}-{rate}.json"
                plan.write_text(json.dumps({"seed": 1000 + i, "corrupt_upload_rate": rate,
                                            "log": str(fault_log)}))
            remote = f"/bench/resend-{i}-{rate}"
            m, doc = net.put(src, remote, fault_plan=plan)
            fig = resend_figures(doc, fault_log) if rate > 0 else {}
            samples[rate].append({"put_s": m.wall_s, **fig})
            net.rm(remote)
            log(f"resend run {i + 1}/{runs} at {rate:.0%}: put {mbps(size, m.wall_s):.1f} "
                f"MB/s, resent/corrupt {fig.get('ratio')}")
    base_s = median(s["put_s"] for s in samples[0.0])
    out: dict[str, Any] = {"size_bytes": size, "runs": runs,
                           "put_s_no_faults": round(base_s, 3), "rates": {}}
    for rate in rates:
        ss = samples[rate]
        corrupt = sum(s["corrupt_bytes"] for s in ss)
        resent = sum(s["resent_bytes"] for s in ss)
        out["rates"][f"{rate:g}"] = {
            "corrupt_segments": sum(s["corrupt_segments"] for s in ss),
            "resent_segments": sum(s["resent_segments"] for s in ss),
            "corrupt_bytes": corrupt, "resent_bytes": resent,
            "resend_ratio": round(resent / corrupt, 3) if corrupt else None,
            "resent_equals_corrupt": all(s["resent_equals_corrupt"] for s in ss),
            "put_s": round(median(s["put_s"] for s in ss), 3),
            "slowdown": round(median(s["put_s"] for s in ss) / base_s, 2)}
    return out


def _bytes_under(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):  # a .part file renamed away meanwhile
                total += os.stat(os.path.join(root, name)).st_size
    return total


def _get_killing(net: MydriveNetwork, remote: str, out: Path, size: int,
                 victim_pid: int) -> tuple[Measured, bool]:
    """One get during which ``victim_pid`` is SIGKILLed once a third of the file arrived."""
    result: dict[str, Any] = {}

    def fetch() -> None:
        try:
            result["m"] = run_measured(net.get_args(remote, out), env=net.env)
        except Exception as exc:  # noqa: BLE001 - reported to the caller below
            result["error"] = exc

    t = threading.Thread(target=fetch)
    t.start()
    killed = False
    while t.is_alive():
        if not killed and _bytes_under(out) >= size * KILL_AT_FRACTION:
            os.kill(victim_pid, signal.SIGKILL)
            killed = True
        time.sleep(0.01)
    t.join()
    if "error" in result:
        raise RuntimeError(f"get with a replica killed failed: {result['error']}")
    return result["m"], killed


def failover(net: MydriveNetwork, src: Path, *, runs: int, work: Path,
             log: Callable[[str], None]) -> dict[str, Any]:
    size = src.stat().st_size
    remote = "/bench/failover"
    net.put(src, remote)
    base: list[float] = []
    hit: list[float] = []
    kills = victim_failures = 0
    try:
        for i in range(runs):
            out = work / "failover-out"
            shutil.rmtree(out, ignore_errors=True)
            m, doc = net.get(remote, out)
            base.append(m.wall_s)
            per_peer = doc["transfer"]["per_peer"]
            busiest = max(per_peer, key=lambda p: per_peer[p]["bytes_fetched"])
            victim = next(s for s in net.services()
                          if s["peer_id"] == busiest and s["kind"] == "sender")
            shutil.rmtree(out, ignore_errors=True)
            m, killed = _get_killing(net, remote, out, size, victim["pid"])
            got = _bytes_under(out)
            if got != size:
                raise RuntimeError(f"get with a replica killed wrote {got} of {size} bytes")
            hit.append(m.wall_s)
            kills += killed
            ledger = json.loads(m.stdout)["transfer"]["per_peer"]
            victim_failures += ledger.get(busiest, {}).get("failures", 0)
            log(f"failover run {i + 1}/{runs}: {base[-1]:.2f} s, with {victim['peer']}'s "
                f"sender killed {m.wall_s:.2f} s (killed mid-transfer: {killed})")
            net.up()  # restart the killed sender
    finally:
        shutil.rmtree(work / "failover-out", ignore_errors=True)
        net.rm(remote)
    return {"size_bytes": size, "runs": runs, "killed_mid_transfer": kills,
            "fetch_failures_from_killed_peer": victim_failures,
            "get_s": [round(x, 3) for x in base],
            "get_s_replica_killed": [round(x, 3) for x in hit],
            "slowdown": round(median(hit) / median(base), 2)}
