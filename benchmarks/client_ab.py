"""A/B of the client side: the same put and get run from several source trees, interleaved.

    cd /tmp; export PYTHONPATH=PEER_TREE:/work/main
    python -m benchmarks.client_ab --tree A=/tmp/base --tree B=/tmp/new [--env B:KEY=VALUE]
        [--size-mib 256] [--runs 3] [--failover] [--put-only]
        [--peer-config B:segment_size_bytes=1048576]

One 5-peer TLS network (R = 2) runs PEER_TREE's code, the same for every variant. Each
variant's ``mydrive put --local`` and ``get --local`` (the transfer in the CLI process, not
as a job of a peer's services, so the engine measured is the variant's) run with
``PYTHONPATH`` at its tree, the variables ``--env`` gives it and the settings of the client's
peer ``--peer-config`` gives it (peer-0's peer.json is rewritten before each variant's turn),
from a directory holding no ``mydrive/`` (``python -m`` puts the working directory
first). Runs alternate A, B, A, B, ... so all see the same load; medians of wall time,
client CPU (wait4) and client peak RSS are printed as JSON. ``--failover`` adds a get
during which the sender that served most of the file is killed a third of the way through
(restarted by ``cluster up`` afterwards). Linux only, like the rest of the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.common import print_ab_medians
from benchmarks.faults import _bytes_under
from benchmarks.mydrive_side import MydriveNetwork
from benchmarks.procs import run_measured

MIB = 1024 * 1024


def _make_file(path: Path, size_mib: int) -> None:
    with open(path, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MIB))


def _env(net: MydriveNetwork, tree: Path) -> dict[str, str]:
    return {**net.env, "PYTHONPATH": str(tree.resolve())}


def _set_peer_config(net: MydriveNetwork, settings: dict[str, int]) -> None:
    """peer-0's peer.json as made by ``cluster up``, with ``settings`` on top."""
    path = net.home / "peer-0" / "peer.json"
    original = path.with_suffix(".json.ab-original")
    if not original.exists():
        original.write_bytes(path.read_bytes())
    path.write_text(json.dumps({**json.loads(original.read_text()), **settings}))


def _busiest_sender_pid(net: MydriveNetwork, get_doc: dict[str, Any]) -> int:
    """The sender that served most bytes of a get (as the failover phase of run.sh picks)."""
    per_peer = get_doc["transfer"]["per_peer"]
    busiest = max(per_peer, key=lambda p: per_peer[p]["bytes_fetched"])
    return int(next(s["pid"] for s in net.services()
                    if s["peer_id"] == busiest and s["kind"] == "sender"))


def _kill_when(out: Path, size: int, pid: int, done: threading.Event) -> None:
    """SIGKILL the sender once a third of the file is under ``out``."""
    while not done.is_set():
        if _bytes_under(out) >= size // 3:
            os.kill(pid, signal.SIGKILL)
            return
        time.sleep(0.01)


def add_variant_arguments(parser: argparse.ArgumentParser) -> None:
    """--tree NAME=PATH (one per variant) and --env NAME:KEY=VALUE (for one variant)."""
    parser.add_argument("--tree", action="append", required=True,
                        help="NAME=PATH of a source tree holding mydrive/")
    parser.add_argument("--env", action="append", default=[],
                        help="NAME:KEY=VALUE, an environment variable for one variant only")


def parse_variants(args: argparse.Namespace
                   ) -> tuple[dict[str, Path], dict[str, dict[str, str]]]:
    """Each variant's source tree and extra environment variables."""
    trees = {n: Path(p) for n, p in (t.split("=", 1) for t in args.tree)}
    extra_env: dict[str, dict[str, str]] = {n: {} for n in trees}
    for item in args.env:
        name, assignment = item.split(":", 1)
        key, value = assignment.split("=", 1)
        extra_env[name][key] = value
    return trees, extra_env


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_variant_arguments(parser)
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--failover", action="store_true")
    parser.add_argument("--peer-config", action="append", default=[],
                        help="NAME:KEY=INT, a setting of the client's peer for one variant only")
    parser.add_argument("--peers-cpu", action="store_true",
                        help="also the CPU of the peers' receivers and nginx during each put "
                             "(for levers that change what the peers are sent)")
    parser.add_argument("--put-only", action="store_true",
                        help="measure puts alone (an upload lever's A/B in half the time)")
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    trees, extra_env = parse_variants(args)
    peer_config: dict[str, dict[str, int]] = {n: {} for n in trees}
    for item in args.peer_config:
        name, assignment = item.split(":", 1)
        key, value = assignment.split("=", 1)
        peer_config[name][key] = int(value)
    work = Path(tempfile.mkdtemp(prefix="client-ab-", dir=args.work_dir))
    net = MydriveNetwork(work / "net", tls=True)
    src = work / "src.bin"
    results: dict[str, dict[str, list[float]]] = {n: {} for n in trees}
    try:
        net.up()
        for run in range(args.runs):
            for name, tree in trees.items():
                _make_file(src, args.size_mib)  # fresh bytes every time
                env = {**_env(net, tree), **extra_env[name]}
                _set_peer_config(net, peer_config[name])
                remote = f"/ab/{name}-{run}"
                before = net.cpu_s_by_kind() if args.peers_cpu else {}
                put = run_measured([*net.put_args(src, remote), "--local"], env=env)
                if args.peers_cpu:
                    after = net.cpu_s_by_kind()
                    for kind in ("receiver", "receiver/sys", "nginx", "nginx/sys"):
                        results[name].setdefault(f"put_{kind}_cpu_s", []).append(
                            after[kind] - before[kind])
                measured = [("put", put)]
                out = work / f"out-{name}"
                if not args.put_only:
                    subprocess.run(["rm", "-rf", str(out)], check=False)
                    get = run_measured([*net.get_args(remote, out), "--local"], env=env)
                    measured.append(("get", get))
                row = results[name]
                for key, m in measured:
                    row.setdefault(f"{key}_wall_s", []).append(m.wall_s)
                    row.setdefault(f"{key}_cpu_s", []).append(m.cpu_s)
                    row.setdefault(f"{key}_sys_s", []).append(m.sys_s)
                    row.setdefault(f"{key}_rss_mib", []).append(m.peak_rss_bytes / MIB)
                if args.failover and not args.put_only:
                    pid = _busiest_sender_pid(net, json.loads(get.stdout))
                    subprocess.run(["rm", "-rf", str(out)], check=False)
                    done = threading.Event()
                    killer = threading.Thread(target=_kill_when,
                                              args=(out, src.stat().st_size, pid, done))
                    killer.start()
                    try:
                        slow = run_measured([*net.get_args(remote, out), "--local"], env=env)
                    finally:
                        done.set()
                        killer.join()
                    row.setdefault("failover_ratio", []).append(slow.wall_s / get.wall_s)
                    net.up()  # restart the killed sender
                net.rm(remote)
        print_ab_medians(args.size_mib, args.runs, results)
    finally:
        net.down()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
