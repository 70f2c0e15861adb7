"""A/B of nginx settings on one running TLS network: each variant edits every peer's rendered
nginx.conf, nginx reloads (SIGHUP), and a put and a get of the same file are timed; the
variants take turns ``--rounds`` times so they all see the same machine load.

    .venv/bin/python -m benchmarks.nginx_ab --size-mib 256 --rounds 3 [--variants a b ...]

Prints the median MB/s, CPU s/GiB (client + every receiver, sender and nginx; and nginx's
and the receivers' own share) and nginx's minor page faults per variant. The variants are
the edits in ``VARIANTS``; ``rendered`` is the config and command line as
``mydrive/node/nginx.py`` makes them today. A variant that changes how nginx starts
(``MALLOC_VARIANTS``) restarts every nginx instead of reloading it. Linux test-bed only.
"""

from __future__ import annotations

import argparse
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
from benchmarks.procs import session_pids
from mydrive.node import cluster
from mydrive.node import nginx as nginx_node

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


def _in_http(directives: str) -> Edit:
    def edit(conf: str, peer_root: Path) -> str:
        return conf.replace("http {", f"http {{\n    {directives}", 1)
    return edit


def _main(directives: str) -> Edit:
    """Main-context directives in place of ``worker_processes 1;``."""
    def edit(conf: str, peer_root: Path) -> str:
        assert "worker_processes 1;" in conf
        return conf.replace("worker_processes 1;", directives, 1)
    return edit


def _cert_header(replacement: str | None) -> Edit:
    def edit(conf: str, peer_root: Path) -> str:
        found = re.search(r"grpc_set_header X-Mydrive-Client-Cert [^;]*;", conf)
        assert found
        return conf.replace(found.group(0),
                            f"grpc_set_header {replacement};" if replacement else "", 1)
    return edit


VARIANTS: dict[str, Edit] = {
    "rendered": lambda conf, peer_root: conf,
    # No "loopback-tcp" variant any more: a TLS peer's services listen on their unix
    # sockets only (docs/security.md, "Other accounts on a peer's machine"); its figures
    # against the sockets are in docs/benchmarks.md.
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
    # The TLS 1.3 suite nginx accepts (the gRPC client's BoringSSL picks AES-128-GCM when
    # offered everything, as nginx does today).
    "aes256-gcm": _in_peer_server("ssl_conf_command Ciphersuites TLS_AES_256_GCM_SHA384;"),
    "chacha20": _in_peer_server("ssl_conf_command Ciphersuites TLS_CHACHA20_POLY1305_SHA256;"),
    "ssl-buffer-64k": _in_peer_server("ssl_buffer_size 64k;"),
    "preread-1m": _in_peer_server("http2_body_preread_size 1m;"),
    "recv-buffer-1m": _in_http("http2_recv_buffer_size 1m;"),
    "workers-2": _main("worker_processes 2;"),
    "workers-2-pinned": _main("worker_processes 2;\nworker_cpu_affinity auto;"),
    # The receiver's certificate header: none at all (the receiver then names the caller
    # by its address), or nginx's SHA-1 fingerprint under another name (ignored by the
    # receiver): what a smaller header could save on both sides.
    "no-cert-header": _cert_header(None),
    "fingerprint-header": _cert_header("X-Mydrive-Client-Fp $ssl_client_fingerprint"),
    # nginx started without mydrive's malloc thresholds (glibc's defaults).
    "malloc-default": lambda conf, peer_root: conf,
}
MALLOC_VARIANTS = {"malloc-default"}


def _restart_nginx(net: MydriveNetwork, *, malloc_tuned: bool) -> None:
    """Every nginx stopped and started again (a reload keeps the master, and with it the
    allocator settings it started with); without the tuning for ``malloc-default``."""
    cluster.stop(net.home, kinds=("nginx",))
    tuned = nginx_node.malloc_environment
    if not malloc_tuned:  # the command line as it was before the thresholds
        nginx_node.malloc_environment = dict
    try:
        cluster.start(net.home, kinds=("nginx",))
    finally:
        nginx_node.malloc_environment = tuned


def _apply(net: MydriveNetwork, originals: dict[Path, str], variant: str,
           running_tuned: bool) -> bool:
    """Make every nginx run ``variant``; whether their allocator is now the tuned one."""
    tuned = variant not in MALLOC_VARIANTS
    if tuned != running_tuned:
        _restart_nginx(net, malloc_tuned=tuned)
    for path, text in originals.items():
        path.write_text(VARIANTS[variant](text, path.parent.parent))
    for s in net.services():
        if s["kind"] == "nginx":
            os.kill(s["pid"], signal.SIGHUP)
    time.sleep(RELOAD_WAIT_S)
    return tuned


def _nginx_minor_faults(net: MydriveNetwork) -> int:
    """Minor page faults so far of every nginx process (and the workers they reaped)."""
    total = 0
    for s in net.services():
        if s["kind"] != "nginx":
            continue
        for pid in session_pids(s["pid"]):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += int(fields[7]) + int(fields[8])  # minflt, cminflt
    return total


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
            tuned = True  # cluster up starts nginx as command() says
            for r in range(args.rounds):
                for variant in args.variants:
                    tuned = _apply(net, originals, variant, tuned)
                    with open(src, "r+b") as f:  # fresh first bytes: nothing to deduplicate
                        f.write(os.urandom(4096))
                    remote, out = f"/ab/{variant}-{r}", work / "out"
                    net.reset_peaks()
                    before, faults0 = net.cpu_s_by_kind(), _nginx_minor_faults(net)
                    m_put, _ = net.put(src, remote)
                    mid, faults1 = net.cpu_s_by_kind(), _nginx_minor_faults(net)
                    m_get, _ = net.get(remote, out)
                    after, faults2 = net.cpu_s_by_kind(), _nginx_minor_faults(net)
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
                        "put_nginx": per_gib(mid["nginx"] - before["nginx"], size),
                        "get_nginx": per_gib(after["nginx"] - mid["nginx"], size),
                        "put_receivers": per_gib(mid["receiver"] - before["receiver"], size),
                        "put_faults_k": (faults1 - faults0) / 1000,
                        "get_faults_k": (faults2 - faults1) / 1000,
                        "nginx_rss": nginx_rss})
                    print(f"round {r + 1} {variant}: " + " ".join(
                        f"{k} {v:.2f}" for k, v in samples[variant][-1].items()), flush=True)
            _apply(net, originals, "rendered", tuned)
        finally:
            net.down()
    print(f"\n{args.size_mib} MiB, TLS, 5 peers, R = 2, median of {args.rounds}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| variant | put MB/s | get MB/s | put CPU s/GiB (nginx, receivers) | "
          "get CPU s/GiB (nginx) | nginx faults put / get (k) | nginx peak MiB |")
    print("|---|---|---|---|---|---|---|")
    for variant, rows in samples.items():
        def med(key: str, rows: list[dict[str, Any]] = rows) -> float:
            return round(float(statistics.median(x[key] for x in rows)), 2)
        print(f"| {variant} | {med('put'):.1f} | {med('get'):.1f} | {med('put_cpu')} "
              f"({med('put_nginx')}, {med('put_receivers')}) | {med('get_cpu')} "
              f"({med('get_nginx')}) | {med('put_faults_k'):.1f} / {med('get_faults_k'):.1f} | "
              f"{med('nginx_rss'):.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
