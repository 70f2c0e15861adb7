"""A/B of nginx settings on one running TLS network: each variant edits every peer's rendered
nginx.conf, nginx reloads (SIGHUP), and a put and a get of the same file are timed; the
variants take turns ``--rounds`` times so they all see the same machine load.

    .venv/bin/python -m benchmarks.nginx_ab --size-mib 256 --rounds 3 [--variants a b ...]

Prints the median MB/s and CPU s/GiB (client + every receiver, sender and nginx) per
variant. The variants are the edits in ``VARIANTS``; ``rendered`` is the config as
``mydrive/node/nginx.py`` renders it today. Linux test-bed only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.common import MiB, mbps, per_gib, random_file
from benchmarks.mydrive_side import MydriveNetwork

RELOAD_WAIT_S = 2.0
PEER_BLOCK_ANCHOR = "grpc_socket_keepalive on;"


Edit = Callable[[str, Path], str]  # (rendered nginx.conf, peer directory) -> nginx.conf


def _in_peer_server(directives: str) -> Edit:
    def edit(conf: str, peer_root: Path) -> str:
        assert PEER_BLOCK_ANCHOR in conf
        return conf.replace(PEER_BLOCK_ANCHOR, f"{PEER_BLOCK_ANCHOR}\n        {directives}", 1)
    return edit


def _keepalive(conf: str, peer_root: Path) -> str:
    """Upstream blocks with idle connections kept, instead of a connection per call."""
    upstreams = []
    for kind in ("receiver", "sender"):
        found = re.search(rf"location /mydrive\.v1\.{kind.capitalize()}/ \{{[^}}]*?grpc_pass "
                          rf"grpc://([^;]+);", conf)
        assert found
        upstreams.append(f"upstream mydrive_{kind} {{ server {found.group(1)}; "
                         f"keepalive 32; }}")
        conf = conf.replace(f"grpc_pass grpc://{found.group(1)};",
                            f"grpc_pass grpc://mydrive_{kind};", 1)
    return conf.replace("http {", "http {\n    " + "\n    ".join(upstreams), 1)


def _loopback_tcp(conf: str, peer_root: Path) -> str:
    """The services' loopback ports instead of their unix sockets (mydrive.node.service_socket)."""
    ports = json.loads((peer_root / "peer.json").read_text())
    for kind in ("receiver", "sender"):
        conf = re.sub(rf"grpc_pass grpc://unix:[^;]*/{kind}\.sock;",
                      f"grpc_pass grpc://127.0.0.1:{ports[f'{kind}_port']};", conf)
    return conf


VARIANTS: dict[str, Edit] = {
    "rendered": lambda conf, peer_root: conf,
    "loopback-tcp": _loopback_tcp,
    "body-window": _in_peer_server("client_body_buffer_size 1m;"),
    "grpc-buffer": _in_peer_server("grpc_buffer_size 1m;"),
    "chunk-size": _in_peer_server("http2_chunk_size 64k;"),
    "keepalive": _keepalive,
    "buffers-256k": _in_peer_server("client_body_buffer_size 256k;\n"
                                    "        grpc_buffer_size 256k;"),
    "buffers-1m": _in_peer_server("client_body_buffer_size 1m;\n        grpc_buffer_size 1m;"),
    "all": lambda conf, peer_root: _keepalive(_in_peer_server(
        "client_body_buffer_size 1m;\n        grpc_buffer_size 1m;")(conf, peer_root),
        peer_root),
}


def _apply(net: MydriveNetwork, originals: dict[Path, str], edit: Edit) -> None:
    for path, text in originals.items():
        path.write_text(edit(text, path.parent.parent))
    for s in net.services():
        if s["kind"] == "nginx":
            os.kill(s["pid"], signal.SIGHUP)
    time.sleep(RELOAD_WAIT_S)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size-mib", type=int, default=256)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--work-dir", type=Path, default=Path("/tmp"))
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(dir=args.work_dir, prefix="nginx-ab-") as tmp:
        work = Path(tmp)
        work.chmod(0o755)  # root's nginx workers ("nobody") reach the peers' service sockets
        src = random_file(work / "file", args.size_mib * MiB)
        size = src.stat().st_size
        net = MydriveNetwork(work / "net", tls=True)
        try:
            net.up()
            originals = {c: c.read_text() for c in sorted(net.home.glob("*/nginx/nginx.conf"))}
            samples: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
            for r in range(args.rounds):
                for variant in args.variants:
                    _apply(net, originals, VARIANTS[variant])
                    with open(src, "r+b") as f:  # fresh first bytes: nothing to deduplicate
                        f.write(os.urandom(4096))
                    remote, out = f"/ab/{variant}-{r}", work / "out"
                    net.reset_peaks()
                    before = net.cpu_s_by_kind()
                    m_put, _ = net.put(src, remote)
                    mid = net.cpu_s_by_kind()
                    m_get, _ = net.get(remote, out)
                    after = net.cpu_s_by_kind()
                    nginx_rss = net.peak_rss_by_kind().get("nginx", 0) / MiB
                    shutil.rmtree(out, ignore_errors=True)
                    net.rm(remote)
                    server = [k for k in after if "/" not in k]
                    samples[variant].append({
                        "put": mbps(size, m_put.wall_s), "get": mbps(size, m_get.wall_s),
                        "put_cpu": per_gib(m_put.cpu_s + sum(mid[k] - before[k]
                                                             for k in server), size),
                        "get_cpu": per_gib(m_get.cpu_s + sum(after[k] - mid[k]
                                                             for k in server), size),
                        "nginx_rss": nginx_rss})
                    print(f"round {r + 1} {variant}: put {samples[variant][-1]['put']:.1f} "
                          f"get {samples[variant][-1]['get']:.1f} MB/s", flush=True)
            _apply(net, originals, VARIANTS["rendered"])
        finally:
            net.down()
    print(f"\n{args.size_mib} MiB, TLS, 5 peers, R = 2, median of {args.rounds}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| variant | put MB/s | get MB/s | put CPU s/GiB | get CPU s/GiB | nginx peak MiB |")
    print("|---|---|---|---|---|---|")
    for variant, rows in samples.items():
        def med(key: str, rows: list[dict[str, Any]] = rows) -> float:
            return round(float(statistics.median(x[key] for x in rows)), 1)
        print(f"| {variant} | {med('put')} | {med('get')} | {med('put_cpu')} | "
              f"{med('get_cpu')} | {med('nginx_rss')} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
