"""Phase 1: put/get of one file through every system, side by side, and their CPU seconds.

Each run moves the same file through mydrive (TLS), mydrive (plain gRPC), scp, sftp and
Tahoe-LAFS in turn, so all systems see the same machine load; medians over the runs are
reported. CPU is counted per process kind: the client child by wait4 (for scp that includes
its ssh), every server process by /proc before and after (for mydrive: all receivers, all
senders, all nginx; for OpenSSH: sshd and its per-connection children; for Tahoe: client
node and storage nodes). CPU is given in seconds per GiB of the user's file, and separately
the part of it spent in the kernel (system time: syscalls, TCP over loopback, disk, fsync).

Every system's get meets its stored bytes in the same state (``cache_state``): after each
put the stored files are synced (timed: "put until durable") and dropped from the page cache,
so the first get reads them from disk ("get", CPU counted); a second get reads them hot.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import cache_state
from benchmarks.common import mbps, median, per_gib
from benchmarks.mydrive_side import MydriveNetwork
from benchmarks.procs import Measured
from benchmarks.ssh_side import SshServer
from benchmarks.tahoe_side import TahoeGrid

# Timed figures per system: the put as it answers, the put until its stored bytes are synced,
# the get from disk (stored bytes dropped from the page cache) and the get right after it.
FIGURES = ("put", "put_durable", "get", "get_hot")
CPU_FIGURES = ("put", "get", "get_hot")  # the transfers whose CPU seconds are counted


@dataclass
class System:
    """How to put and get one file, and how to read the servers' CPU seconds."""

    name: str
    put: Callable[[Path, str], tuple[Measured, Any]]
    get: Callable[[Any, Path], Measured]
    server_cpu_s: Callable[[], dict[str, float]]
    forget: Callable[[Any], None]
    # The server-side files holding a put's stored bytes (to sync and drop from the cache).
    stored_files: Callable[[Any], list[Path]]


def mydrive_system(name: str, net: MydriveNetwork) -> System:
    def put(src: Path, tag: str) -> tuple[Measured, Any]:
        m, _ = net.put(src, f"/bench/{tag}")
        return m, f"/bench/{tag}"

    def get(remote: Any, out: Path) -> Measured:
        m, _ = net.get(str(remote), out)
        return m

    # Only the file being measured is stored: the previous run's was removed and collected.
    return System(name, put, get, net.cpu_s_by_kind, lambda remote: net.rm(str(remote)),
                  lambda remote: cache_state.files_under(net.home, "*.chunk", what=name))


def ssh_system(name: str, server: SshServer, store: Path) -> System:
    store.mkdir(parents=True, exist_ok=True)
    send = server.scp_put if name == "scp" else server.sftp_put
    fetch = server.scp_get if name == "scp" else server.sftp_get

    def put(src: Path, tag: str) -> tuple[Measured, Any]:
        return send(src, store / tag), store / tag

    def get(remote: Any, out: Path) -> Measured:
        out.mkdir(parents=True, exist_ok=True)
        return fetch(Path(remote), out / Path(remote).name)

    return System(name, put, get, server.cpu_s,
                  lambda remote: Path(remote).unlink(missing_ok=True),
                  lambda remote: [Path(remote)])


def tahoe_system(grid: TahoeGrid) -> System:
    def get(cap: Any, out: Path) -> Measured:
        out.mkdir(parents=True, exist_ok=True)
        return grid.get(str(cap), out / "file")

    # Tahoe has no cheap delete of an immutable share set; the grid is deleted at the end, so
    # earlier runs' shares are synced and dropped too (a no-op after the first time).
    return System("tahoe", lambda src, tag: grid.put(src), get, grid.cpu_s, lambda cap: None,
                  lambda cap: grid.share_files())


def _check_size(name: str, out: Path, size: int) -> None:
    got = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    if got != size:
        raise RuntimeError(f"{name} get wrote {got} bytes, expected {size}")


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def _fresh_head(src: Path) -> None:
    """New random first bytes each run: Tahoe's convergent encryption would otherwise find
    the shares of the previous run's identical file and skip the upload."""
    with open(src, "r+b") as f:
        f.write(os.urandom(4096))


def run(systems: list[System], src: Path, *, runs: int, work: Path,
        log: Callable[[str], None]) -> dict[str, Any]:
    """Medians of ``runs`` puts and gets of ``src`` per system, plus CPU s/GiB per kind."""
    size = src.stat().st_size
    samples: dict[str, dict[str, list[Any]]] = {
        s.name: {**{f"{f}_s": [] for f in FIGURES}, **{f"{f}_cpu": [] for f in CPU_FIGURES}}
        for s in systems}
    for i in range(runs):
        _fresh_head(src)
        for system in systems:
            out = work / f"out-{system.name}"
            shutil.rmtree(out, ignore_errors=True)
            before = system.server_cpu_s()
            m_put, handle = system.put(src, f"{system.name}-{i}")
            mid = system.server_cpu_s()
            sync_s = cache_state.settle(system.stored_files(handle))
            cold = system.server_cpu_s()
            m_get = system.get(handle, out)
            after = system.server_cpu_s()
            _check_size(system.name, out, size)
            shutil.rmtree(out, ignore_errors=True)
            m_hot = system.get(handle, out)
            after_hot = system.server_cpu_s()
            _check_size(system.name, out, size)
            shutil.rmtree(out, ignore_errors=True)
            system.forget(handle)
            s = samples[system.name]
            s["put_s"].append(m_put.wall_s)
            s["put_durable_s"].append(m_put.wall_s + sync_s)
            s["get_s"].append(m_get.wall_s)
            s["get_hot_s"].append(m_hot.wall_s)
            s["put_cpu"].append({"client": m_put.cpu_s, "client/sys": m_put.sys_s,
                                 **_delta(before, mid)})
            s["get_cpu"].append({"client": m_get.cpu_s, "client/sys": m_get.sys_s,
                                 **_delta(cold, after)})
            s["get_hot_cpu"].append({"client": m_hot.cpu_s, "client/sys": m_hot.sys_s,
                                     **_delta(after, after_hot)})
            log(f"run {i + 1}/{runs} {system.name}: put {mbps(size, m_put.wall_s):.1f} MB/s "
                f"({mbps(size, m_put.wall_s + sync_s):.1f} until durable), get "
                f"{mbps(size, m_get.wall_s):.1f} MB/s ({mbps(size, m_hot.wall_s):.1f} hot)")
    out_doc: dict[str, Any] = {"size_bytes": size, "runs": runs, "systems": {}}
    for name, s in samples.items():
        doc: dict[str, Any] = {}
        for figure in FIGURES:
            doc[f"{figure}_s"] = [round(x, 3) for x in s[f"{figure}_s"]]
            doc[f"{figure}_MBps"] = round(mbps(size, median(s[f"{figure}_s"])), 1)
        for direction in CPU_FIGURES:
            cpu = s[f"{direction}_cpu"]
            per_key = {k: round(per_gib(median(c[k] for c in cpu), size), 2) for k in cpu[0]}
            per_kind = {k: v for k, v in per_key.items() if not k.endswith("/sys")}
            per_kind["total"] = round(sum(per_kind.values()), 2)
            doc[f"{direction}_cpu_s_per_gib"] = per_kind
            doc[f"{direction}_kernel_cpu_s_per_gib"] = {
                k.removesuffix("/sys"): v for k, v in per_key.items() if k.endswith("/sys")}
        out_doc["systems"][name] = doc
    systems_doc = out_doc["systems"]
    ratios: dict[str, dict[str, float]] = {}
    for ref in ("scp", "sftp", "tahoe"):
        if ref not in systems_doc:
            continue
        for name in ("mydrive_tls", "mydrive_plain"):
            if name in systems_doc:
                ratios[f"{name}/{ref}"] = {
                    d: round(systems_doc[name][f"{d}_MBps"] / systems_doc[ref][f"{d}_MBps"], 2)
                    for d in FIGURES}
    out_doc["ratios"] = ratios
    return out_doc
