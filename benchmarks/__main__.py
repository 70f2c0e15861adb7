"""The benchmark suite: ``./benchmarks/run.sh [--quick]`` (or ``python -m benchmarks``).

Installs what it lacks (benchmarks/setup.sh), starts everything it measures on loopback
(two mydrive networks, one sshd, a Tahoe-LAFS grid), runs the phases side by side, stops
what it started by PID and writes results.json, summary.md and PNG plots to ``--out``.
A phase that fails is recorded under "errors" and the others still run; the exit code is 1
when any phase failed.
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
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import faults, memory, profiles, report, throughput
from benchmarks.common import ROOT, MiB, commit, machine, median, now_utc, random_file
from benchmarks.mydrive_side import MydriveNetwork
from benchmarks.ssh_side import SshServer
from benchmarks.tahoe_side import TahoeGrid

FULL = {"size_mib": 1024, "runs": 3, "rss_sizes_mib": [256, 4096], "fault_size_mib": 256,
        "tahoe": True}
QUICK = {"size_mib": 64, "runs": 1, "rss_sizes_mib": [16, 64], "fault_size_mib": 32,
         "tahoe": False}
FAULT_RATES = [0.01, 0.05, 0.2]
PHASES = ("throughput", "command_overhead", "failover", "memory", "resend", "profile")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true",
                   help="64 MiB, 1 run, peak RSS at 16/64 MiB, no Tahoe: a few minutes")
    p.add_argument("--size-mib", type=int, help="throughput/failover file (full: 1024)")
    p.add_argument("--runs", type=int, help="runs per figure; medians reported (full: 3)")
    p.add_argument("--rss-sizes-mib", type=int, nargs="+",
                   help="file sizes of the peak-RSS phase (full: 256 4096)")
    p.add_argument("--fault-size-mib", type=int, help="file of the resend phase (full: 256)")
    p.add_argument("--profile-size-mib", type=int,
                   help="file of the py-spy phase (default: the fault size)")
    tahoe = p.add_mutually_exclusive_group()
    tahoe.add_argument("--tahoe", dest="tahoe", action="store_true", default=None,
                       help="include Tahoe-LAFS (installs it; the full run does)")
    tahoe.add_argument("--no-tahoe", dest="tahoe", action="store_false")
    p.add_argument("--phases", nargs="+", choices=PHASES, default=list(PHASES),
                   help="run only these phases (default: all)")
    p.add_argument("--no-setup", action="store_true", help="don't run benchmarks/setup.sh")
    p.add_argument("--out", type=Path, help="results directory (default: "
                   "benchmarks/results/quick or benchmarks/results/full)")
    p.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()),
                   help="where the test files and peer homes go (needs ~6 x size free)")
    opts = p.parse_args(argv)
    defaults = QUICK if opts.quick else FULL
    for key, value in defaults.items():
        if getattr(opts, key) is None:
            setattr(opts, key, value)
    if opts.profile_size_mib is None:
        opts.profile_size_mib = opts.fault_size_mib
    if opts.out is None:
        opts.out = ROOT / "benchmarks" / "results" / ("quick" if opts.quick else "full")
    return opts


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def overhead(net: MydriveNetwork, runs: int) -> dict[str, float]:
    """Median wall and CPU seconds of a command that moves no data (``mydrive ls``)."""
    samples = [net.command_overhead() for _ in range(max(runs, 3))]
    return {"wall_s": round(median(m.wall_s for m in samples), 3),
            "cpu_s": round(median(m.cpu_s for m in samples), 3)}


def main(argv: list[str] | None = None) -> int:
    opts = parse(sys.argv[1:] if argv is None else argv)
    if not opts.no_setup:
        subprocess.run(["bash", str(ROOT / "benchmarks" / "setup.sh"),
                        *(["--tahoe"] if opts.tahoe else [])], check=True)
    opts.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"meta": {
        "date": now_utc(), "commit": commit(), "machine": machine(),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(opts).items()},
        "peers": 5, "replicas": 2, "load_average_at_start": os.getloadavg()}, "errors": {}}
    work = Path(tempfile.mkdtemp(prefix="mydrive-bench-", dir=opts.work_dir))
    work.chmod(0o755)  # as root, nginx's workers ("nobody") must reach the service sockets
    tls = MydriveNetwork(work / "net-tls", tls=True)
    plain = MydriveNetwork(work / "net-plain", tls=False)
    ssh = SshServer(work / "ssh")
    grid = TahoeGrid(work / "tahoe") if opts.tahoe and "throughput" in opts.phases else None
    started: list[Callable[[], None]] = []

    def phase(name: str, body: Callable[[], Any]) -> None:
        log(f"phase {name}")
        t0 = time.monotonic()
        try:
            results[name] = body()
        except Exception as exc:  # noqa: BLE001 - recorded, the other phases still run
            traceback.print_exc()
            results["errors"][name] = f"{type(exc).__name__}: {exc}"
        log(f"phase {name} done in {time.monotonic() - t0:.0f} s")

    want = set(opts.phases)
    try:
        needed: list[Any] = [tls]
        if "throughput" in want:
            needed += [plain, ssh, *([grid] if grid else [])]
        log(f"starting on loopback: {len(needed)} of (mydrive TLS network, mydrive plain "
            f"network, sshd, Tahoe grid); work dir {work}")
        for thing in needed:
            # Registered before starting, so a half-started one is stopped too.
            if isinstance(thing, MydriveNetwork):
                started.append(thing.down)
                thing.up()
            else:
                started.append(thing.stop)
                thing.start()
        if want & {"throughput", "failover"}:
            src = random_file(work / "src", opts.size_mib * MiB)
        if "throughput" in want:
            systems = [throughput.mydrive_system("mydrive_tls", tls),
                       throughput.mydrive_system("mydrive_plain", plain),
                       throughput.ssh_system("scp", ssh, work / "ssh-store"),
                       throughput.ssh_system("sftp", ssh, work / "ssh-store")]
            if grid:
                systems.append(throughput.tahoe_system(grid))
            phase("throughput", lambda: throughput.run(systems, src, runs=opts.runs,
                                                       work=work, log=log))
            if grid:
                grid.stop()  # its shares take disk and its nodes CPU; not needed any more
            plain.down()
        if "command_overhead" in want:
            phase("command_overhead", lambda: overhead(tls, opts.runs))
        if "failover" in want:
            phase("failover", lambda: faults.failover(tls, src, runs=opts.runs, work=work,
                                                      log=log))
        if want & {"throughput", "failover"}:
            src.unlink()
        if "memory" in want:
            phase("memory", lambda: memory.run(tls, opts.rss_sizes_mib, work=work, log=log))
        if want & {"resend", "profile"}:
            fsrc = random_file(work / "fault-src", opts.fault_size_mib * MiB)
        if "resend" in want:
            phase("resend", lambda: faults.resend(tls, fsrc, FAULT_RATES, runs=opts.runs,
                                                  work=work, log=log))
        if "profile" in want:
            psrc = fsrc
            if opts.profile_size_mib != opts.fault_size_mib:
                psrc = random_file(work / "profile-src", opts.profile_size_mib * MiB)
            phase("profile", lambda: profiles.run(tls, psrc, out_dir=opts.out / "profiles",
                                                  work=work, log=log))
    finally:
        for stop in reversed(started):
            try:
                stop()
            except Exception:  # noqa: BLE001 - keep stopping the others
                traceback.print_exc()
        shutil.rmtree(work, ignore_errors=True)
    # Other work on a shared machine slows every system; a high load makes figures noisy.
    results["meta"]["load_average_at_end"] = os.getloadavg()
    results["plots"] = report.write_plots(results, opts.out)
    (opts.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    summary = report.markdown(results)
    (opts.out / "summary.md").write_text(summary)
    print(summary)
    log(f"wrote {opts.out / 'results.json'}, summary.md and {', '.join(results['plots'])}")
    return 1 if results["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
