"""A/B of the peer services' gRPC server options: StoreChunk over plain loopback gRPC.

    .venv/bin/python -m benchmarks.grpc_server_ab [--chunks 32] [--streams 4] [--rounds 3]

One receiver process per variant (``mydrive.node.serve.build_server`` with
``serve.SERVER_OPTIONS`` replaced by the variant's options, its own peer directory), all
running at once; the client streams the same 4 MiB chunks (16 segments of 256 KiB, one
round each, ``--streams`` at a time) to each in turn, ``--rounds`` times, so every variant
sees the same load. Prints median MB/s and the receiver's CPU s per GiB (from /proc).
Linux test-bed only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchmarks.procs import session_cpu_s

MiB = 1024 * 1024
SEGMENT_BYTES = 256 * 1024
CHUNK_BYTES = 4 * MiB
MAX_FRAME = 1024 * 1024 - 1  # HTTP/2 allows up to 2^24 - 1; gRPC caps what it accepts

VARIANTS: dict[str, list[tuple[str, Any]]] = {
    "current": [],
    "big-frames": [("grpc.http2.max_frame_size", MAX_FRAME)],
    "throughput": [("grpc.optimization_target", "throughput")],
    "lookahead": [("grpc.http2.lookahead_bytes", 4 * MiB)],
}


def _serve(variant: str, peer_root: Path) -> None:
    from mydrive.node import serve
    from mydrive.node.peerdir import init_peer
    from mydrive.runtime.metrics import Metrics

    serve.SERVER_OPTIONS = [*serve.SERVER_OPTIONS, *VARIANTS[variant]]
    peer = init_peer(peer_root, capacity_bytes=1 << 40)
    server, address = serve.build_server("receiver", peer, Metrics())
    server.start()
    print(address, flush=True)
    sys.stdin.read()  # until the parent closes it
    server.stop(0)


def _chunks(count: int) -> list[tuple[Any, list[bytes]]]:
    from mydrive.formats.chunkheader import ChunkHeader
    from mydrive.formats.digest import DIGEST_ALG, digest

    out = []
    for _ in range(count):
        data = os.urandom(CHUNK_BYTES)
        segs = [data[i:i + SEGMENT_BYTES] for i in range(0, CHUNK_BYTES, SEGMENT_BYTES)]
        out.append((ChunkHeader(chunk_id=digest(data), digest_alg=DIGEST_ALG,
                                owner_public_key=b"\x01" * 32, chunk_size_bytes=CHUNK_BYTES,
                                segment_size_bytes=SEGMENT_BYTES,
                                segment_digests=tuple(digest(s) for s in segs)), segs))
    return out


def _store_all(address: str, chunks: list[tuple[Any, list[bytes]]], streams: int) -> None:
    import grpc

    from mydrive.node.serve import SERVER_OPTIONS
    from mydrive.transport.codec import header_to_pb
    from mydrive.transport.wire import mydrive_pb2 as pb
    from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc

    with grpc.insecure_channel(address, options=SERVER_OPTIONS) as channel:
        stub = pb_grpc.ReceiverStub(channel)  # type: ignore[no-untyped-call]

        def one(item: tuple[Any, list[bytes]]) -> None:
            header, segs = item

            def messages() -> Any:
                yield pb.StoreMsg(header=header_to_pb(header))
                for i, seg in enumerate(segs):
                    yield pb.StoreMsg(segment=pb.Segment(index=i, data=seg))
                yield pb.StoreMsg(round_end=pb.RoundEnd())

            acks = list(stub.StoreChunk(messages(), timeout=120))
            assert acks[-1].WhichOneof("ack") == "committed", acks[-1]

        with ThreadPoolExecutor(streams) as pool:
            list(pool.map(one, chunks))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--chunks", type=int, default=32)
    p.add_argument("--streams", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--work-dir", type=Path, default=Path("/tmp"))
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--peer", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.peer)
        return 0
    with tempfile.TemporaryDirectory(dir=args.work_dir, prefix="grpc-ab-") as tmp:
        procs: dict[str, tuple[subprocess.Popen[str], str]] = {}
        try:
            for v in args.variants:
                proc = subprocess.Popen([sys.executable, "-m", "benchmarks.grpc_server_ab",
                                         "--serve", v, "--peer", str(Path(tmp) / v)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, start_new_session=True)
                assert proc.stdout is not None
                procs[v] = (proc, proc.stdout.readline().strip())
            rows: dict[str, list[tuple[float, float]]] = {v: [] for v in args.variants}
            for r in range(args.rounds):
                for v, (proc, address) in procs.items():
                    chunks = _chunks(args.chunks)  # fresh ids: nothing is already held
                    cpu0, t0 = session_cpu_s(proc.pid), time.perf_counter()
                    _store_all(address, chunks, args.streams)
                    wall, cpu = time.perf_counter() - t0, session_cpu_s(proc.pid) - cpu0
                    size = args.chunks * CHUNK_BYTES
                    rows[v].append((size / wall / 1e6, cpu / (size / (1024 * MiB))))
                    print(f"round {r + 1} {v}: {rows[v][-1][0]:.1f} MB/s, "
                          f"{rows[v][-1][1]:.2f} CPU s/GiB", flush=True)
        finally:
            for proc, _ in procs.values():
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=30)
    print(f"\n{args.chunks} chunks of 4 MiB, {args.streams} streams, median of {args.rounds}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| server options | MB/s | receiver CPU s/GiB |\n|---|---|---|")
    for v, samples in rows.items():
        print(f"| {v} {json.dumps(VARIANTS[v]) if VARIANTS[v] else ''} | "
              f"{statistics.median(s[0] for s in samples):.1f} | "
              f"{statistics.median(s[1] for s in samples):.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
