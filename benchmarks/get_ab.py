"""A/B of the download engine: one file put once, then ``get --local`` by each variant in turn.

    cd /tmp; export PYTHONPATH=PEER_TREE:/work/main
    python -m benchmarks.get_ab --tree A=/tmp/base --tree B=/tmp/new [--env B:KEY=VALUE]
        [--size-mib 512] [--runs 5] [--cold] [--senders-from-tree]

Like ``client_ab`` (one 5-peer TLS network, R = 2, running PEER_TREE's code for every
variant), but a get is what is compared, so the file is put once (with the first tree) and
every run gets it once per variant, alternating A, B, A, B, ... under the same load. Per get:
wall time, the client's CPU and its kernel part (wait4), its peak RSS, and the CPU the
senders and nginx spent meanwhile (/proc), per GiB of file. Medians are printed as JSON.

``--cold``: before every get, sync every stored chunk file of the network and drop its pages,
so each variant's get reads the chunks from disk (as a real get after a put does: the put
drops them, see ``benchmarks.cache_state``); without it the gets after the first read memory.
``--senders-from-tree``: for a lever of the serving side, each variant's senders run its own
tree: before its turn every sender is stopped and ``cluster up`` starts them again from it
(so every get meets freshly started senders, whichever the variant).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from benchmarks import cache_state
from benchmarks.client_ab import (
    MIB,
    _env,
    _make_file,
    add_variant_arguments,
    parse_variants,
)
from benchmarks.common import print_ab_medians
from benchmarks.mydrive_side import MydriveNetwork
from benchmarks.procs import run_measured
from mydrive.node import cluster


def _restart_senders(net: MydriveNetwork, tree: Path) -> None:
    """Stop every sender of ``net`` (``cluster stop``'s own SIGTERM and wait) and have
    ``cluster up`` start them again from ``tree``."""
    cluster.stop(net.home, kinds=("sender",))
    saved, net.env = net.env, _env(net, tree)
    try:
        net.up()
    finally:
        net.env = saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_variant_arguments(parser)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--cold", action="store_true",
                        help="drop the stored chunks' pages before every get (read from disk)")
    parser.add_argument("--senders-from-tree", action="store_true",
                        help="each variant's senders run its tree (restarted before its turn)")
    args = parser.parse_args()
    trees, extra_env = parse_variants(args)
    work = Path(tempfile.mkdtemp(prefix="get-ab-", dir=args.work_dir))
    net = MydriveNetwork(work / "net", tls=True)
    src = work / "src.bin"
    per_gib = 1024 / args.size_mib
    results: dict[str, dict[str, list[float]]] = {n: {} for n in trees}
    try:
        net.up()
        _make_file(src, args.size_mib)
        first = next(iter(trees.values()))
        run_measured([*net.put_args(src, "/ab/file"), "--local"], env=_env(net, first))
        for _ in range(args.runs):
            for name, tree in trees.items():
                env = {**_env(net, tree), **extra_env[name]}
                out = work / f"out-{name}"
                subprocess.run(["rm", "-rf", str(out)], check=False)
                if args.senders_from_tree:
                    _restart_senders(net, tree)
                if args.cold:
                    cache_state.settle(
                        cache_state.files_under(net.home, "*.chunk", what="mydrive"))
                before = net.cpu_s_by_kind()
                get = run_measured([*net.get_args("/ab/file", out), "--local"], env=env)
                after = net.cpu_s_by_kind()
                row = results[name]
                row.setdefault("wall_s", []).append(get.wall_s)
                row.setdefault("client_cpu_s_per_gib", []).append(get.cpu_s * per_gib)
                row.setdefault("client_sys_s_per_gib", []).append(get.sys_s * per_gib)
                row.setdefault("client_rss_mib", []).append(get.peak_rss_bytes / MIB)
                for kind in ("sender", "nginx"):
                    row.setdefault(f"{kind}_cpu_s_per_gib", []).append(
                        (after[kind] - before[kind]) * per_gib)
        print_ab_medians(args.size_mib, args.runs, results)
    finally:
        net.down()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
