"""A/B of the peer services' gRPC servers: StoreChunk and FetchChunk over loopback gRPC.

    .venv/bin/python -m benchmarks.grpc_server_ab [--chunks 32] [--streams 4] [--rounds 3]

One process per variant (``mydrive.node.serve.build_server``'s receiver and sender with
``serve.SERVER_OPTIONS`` replaced by the variant's options, or the variant's own server; its
own peer directory), all running at once; the client streams the same 4 MiB chunks (16
segments of 256 KiB, one round each, ``--streams`` at a time) to each in turn, then fetches
them back whole (signed by their owner), ``--rounds`` times, so every variant sees the same
load. Prints median MB/s and the process's CPU s per GiB in each phase (from /proc): the
receiver's while storing, the sender's while fetching. Plain gRPC, but for the ``tls``
variant: the services' own mutual TLS on a port of their own, where nginx terminates it
in a peer. Linux test-bed only.
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

from benchmarks.peer_paths import chunk_id_under_default_scheme
from benchmarks.procs import peak_rss_bytes, session_cpu_split_s

MiB = 1024 * 1024
SEGMENT_BYTES = 256 * 1024
CHUNK_BYTES = 4 * MiB
MAX_FRAME = 1024 * 1024 - 1  # HTTP/2 allows up to 2^24 - 1; gRPC caps what it accepts

VARIANTS: dict[str, list[tuple[str, Any]]] = {
    "current": [],
    "big-frames": [("grpc.http2.max_frame_size", MAX_FRAME)],
    "throughput": [("grpc.optimization_target", "throughput")],
    "lookahead": [("grpc.http2.lookahead_bytes", 4 * MiB)],
    "no-bdp": [("grpc.http2.bdp_probe", 0)],  # no bandwidth-delay pings to size windows
    "gc-rare": [],  # the collector's first generation every 50,000 allocations, not 700
    "switch-20ms": [],  # sys.setswitchinterval(0.02): the GIL changes hands less often
    "aio": [],  # grpc.aio servers, one event loop (_serve_aio); the commit in a thread
    # runtime/allocator.tune_for_transfers() in the server process (mmap threshold 8 MiB, trim
    # 32 MiB): what the receiver's build_server does, so the same as "current" here
    "malloc": [],
    "untuned": [],  # glibc's default mmap and trim thresholds (build_server's tuning undone)
    "mmap-only": [],  # only the mmap threshold raised (8 MiB), glibc's default trim threshold
    "trim-4m": [],  # mmap threshold 8 MiB, trim threshold 4 MiB (not 32)
    "arena-2": [],  # tuned as build_server does, and at most 2 malloc arenas (M_ARENA_MAX)
    # The services doing mutual TLS themselves (gRPC's own, BoringSSL) on a port of their own,
    # instead of nginx terminating it in front of them: what "TLS in the services" would cost
    # them; the client is the same gRPC client, now with TLS (not measured here either way).
    "tls": [],
}
TLS_NAME = "mydrive-grpc-ab"  # the servers' certificate name, which the client pins


def _serve_aio(peer: Any) -> None:
    """Prototype grpc.aio services on one event loop and port: StoreChunk through
    ReceiverSession (header, segments: hash + write inline; the commit's syncs in a worker
    thread), FetchChunk through ChunkServer (reads inline); no stream limits or caller
    identity (what the measurement is about is the server)."""
    import asyncio

    import grpc

    from mydrive.node import serve
    from mydrive.runtime.allocator import tune_for_transfers
    from mydrive.runtime.clock import SystemClock
    from mydrive.runtime.metrics import Metrics
    from mydrive.storage.chunkstore import ChunkStore
    from mydrive.storage.receiver import ReceiverSession
    from mydrive.storage.sender import ChunkServer
    from mydrive.transport.codec import header_from_pb
    from mydrive.transport.signed_fetch import ReplayGuard, SignedFetch
    from mydrive.transport.wire import mydrive_pb2 as pb
    from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc

    tune_for_transfers()  # as the receiver's build_server does
    store = ChunkStore(peer.store_dir, capacity_bytes=1 << 40)
    metrics = Metrics()
    chunk_server = ChunkServer(store, peer_id=peer.config.peer_id, clock=SystemClock(),
                               replay_guard=ReplayGuard(), metrics=metrics)

    class Sender(pb_grpc.SenderServicer):
        async def FetchChunk(self, request: Any, context: Any) -> Any:  # noqa: N802
            signed = SignedFetch(request=bytes(request.request),
                                 signature=bytes(request.signature),
                                 delegation=bytes(request.delegation))
            for index, data in chunk_server.fetch(signed):
                yield pb.Segment(index=index, data=data)

    class Receiver(pb_grpc.ReceiverServicer):
        async def StoreChunk(self, requests: Any, context: Any) -> Any:  # noqa: N802
            loop = asyncio.get_running_loop()
            session = ReceiverSession(store, metrics)
            try:
                async for msg in requests:
                    kind = msg.WhichOneof("msg")
                    if kind == "header":
                        held = session.start(header_from_pb(msg.header))
                        yield pb.StoreAck(held=pb.SegmentsHeld(indices=sorted(held.indices),
                                                               committed=held.committed))
                    elif kind == "segment":
                        session.segment(msg.segment.index, msg.segment.data)
                    else:
                        bad = await loop.run_in_executor(None, session.end_round)
                        if not bad:
                            yield pb.StoreAck(committed=pb.Committed())
                            return
                        yield pb.StoreAck(bad=pb.BadSegments(indices=bad))
            finally:
                session.close()

    async def run() -> None:
        server = grpc.aio.server(options=serve.SERVER_OPTIONS)
        pb_grpc.add_ReceiverServicer_to_server(Receiver(), server)  # type: ignore[no-untyped-call]
        pb_grpc.add_SenderServicer_to_server(Sender(), server)  # type: ignore[no-untyped-call]
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(f"127.0.0.1:{port}", f"127.0.0.1:{port}", peer.config.peer_id, flush=True)
        await loop.run_in_executor(None, sys.stdin.read)
        await server.stop(0)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(run())


def _serve(variant: str, peer_root: Path) -> None:
    from mydrive.node import serve
    from mydrive.node.peerdir import init_peer
    from mydrive.runtime.metrics import Metrics

    serve.SERVER_OPTIONS = [*serve.SERVER_OPTIONS, *VARIANTS[variant]]
    peer = init_peer(peer_root, capacity_bytes=1 << 40)
    if variant == "aio":
        _serve_aio(peer)
        return
    if variant == "gc-rare":
        import gc

        gc.freeze()
        gc.set_threshold(50_000, 10, 10)
    if variant == "switch-20ms":
        sys.setswitchinterval(0.02)
    if variant in ("untuned", "mmap-only", "trim-4m", "malloc"):
        serve.tune_for_transfers = lambda **_: False  # type: ignore[attr-defined]
    if variant == "arena-2":
        import ctypes
        ctypes.CDLL(None).mallopt(-8, 2)  # M_ARENA_MAX, glibc's <malloc.h>
    if variant in ("mmap-only", "trim-4m"):
        import ctypes

        from mydrive.runtime import allocator

        mallopt = ctypes.CDLL(None).mallopt
        mallopt(allocator._M_MMAP_THRESHOLD, allocator.MMAP_THRESHOLD_BYTES)
        if variant == "trim-4m":
            mallopt(allocator._M_TRIM_THRESHOLD, 4 * MiB)
    if variant == "malloc":
        from mydrive.runtime.allocator import tune_for_transfers

        assert tune_for_transfers()
    receiver, address = serve.build_server("receiver", peer, Metrics())
    sender, sender_address = serve.build_server("sender", peer, Metrics())
    if variant == "tls":
        credentials = _server_tls(peer_root)
        address = f"tls:127.0.0.1:{receiver.add_secure_port('127.0.0.1:0', credentials)}"
        sender_address = f"tls:127.0.0.1:{sender.add_secure_port('127.0.0.1:0', credentials)}"
    receiver.start()
    sender.start()
    print(address, sender_address, peer.config.peer_id, flush=True)
    sys.stdin.read()  # until the parent closes it
    receiver.stop(0)
    sender.stop(0)


def _server_tls(peer_root: Path) -> Any:
    """Server credentials requiring a client certificate, all from a CA made here; the CA
    and the client's key and certificate are left in PEER_ROOT for the client (_channel)."""
    import grpc

    from mydrive.crypto.primitives import issue_certificate, new_certificate_authority

    ca = new_certificate_authority("grpc-ab")
    server = issue_certificate(ca, TLS_NAME, dns_names=[TLS_NAME])
    client = issue_certificate(ca, "grpc-ab-client")
    for name, data in (("ca.pem", ca.cert_pem), ("client.key", client.key_pem),
                       ("client.pem", client.cert_pem)):
        (peer_root / name).write_bytes(data)
    return grpc.ssl_server_credentials([(server.key_pem, server.cert_pem)],
                                       root_certificates=ca.cert_pem,
                                       require_client_auth=True)


def _channel(address: str, peer_root: Path) -> Any:
    """A channel to ``address``: plain, or ``tls:host:port`` with mutual TLS (_server_tls)."""
    import grpc

    from mydrive.node.serve import SERVER_OPTIONS

    if not address.startswith("tls:"):
        return grpc.insecure_channel(address, options=SERVER_OPTIONS)
    credentials = grpc.ssl_channel_credentials(
        root_certificates=(peer_root / "ca.pem").read_bytes(),
        private_key=(peer_root / "client.key").read_bytes(),
        certificate_chain=(peer_root / "client.pem").read_bytes())
    return grpc.secure_channel(address[len("tls:"):], credentials,
                               options=[*SERVER_OPTIONS,
                                        ("grpc.ssl_target_name_override", TLS_NAME)])


def _owner() -> Any:
    from mydrive.crypto.primitives import IdentityKey

    return IdentityKey.from_seed(b"\x01" * 32)


def _chunks(count: int) -> list[tuple[Any, list[bytes]]]:
    from mydrive.formats import digest as digests
    from mydrive.formats.chunkheader import ChunkHeader

    owner = _owner().public_bytes()
    out = []
    for _ in range(count):
        data = os.urandom(CHUNK_BYTES)
        segs = [data[i:i + SEGMENT_BYTES] for i in range(0, CHUNK_BYTES, SEGMENT_BYTES)]
        seg_digests = tuple(digests.digest(s) for s in segs)
        chunk_id = chunk_id_under_default_scheme(digests, data, SEGMENT_BYTES, seg_digests)
        out.append((ChunkHeader(chunk_id=chunk_id,
                                digest_alg=digests.DIGEST_ALG, owner_public_key=owner,
                                chunk_size_bytes=CHUNK_BYTES, segment_size_bytes=SEGMENT_BYTES,
                                segment_digests=seg_digests), segs))
    return out


def _fetch_all(address: str, peer_id: str, chunks: list[tuple[Any, list[bytes]]],
               streams: int, peer_root: Path) -> None:
    """Fetch every chunk back whole from the sender, signed by its owner."""
    from mydrive.runtime.clock import SystemClock
    from mydrive.transport.signed_fetch import sign_fetch
    from mydrive.transport.wire import mydrive_pb2 as pb
    from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc

    owner, clock = _owner(), SystemClock()
    with _channel(address, peer_root) as channel:
        stub = pb_grpc.SenderStub(channel)  # type: ignore[no-untyped-call]

        def one(item: tuple[Any, list[bytes]]) -> None:
            header, segs = item
            signed = sign_fetch(owner, chunk_id=header.chunk_id, target_peer_id=peer_id,
                                segment_indices=[], clock=clock)
            got = list(stub.FetchChunk(pb.SignedFetch(request=signed.request,
                                                      signature=signed.signature), timeout=120))
            assert len(got) == len(segs), len(got)

        with ThreadPoolExecutor(streams) as pool:
            list(pool.map(one, chunks))


def _store_all(address: str, chunks: list[tuple[Any, list[bytes]]], streams: int,
               peer_root: Path) -> None:
    from mydrive.transport.codec import header_to_pb
    from mydrive.transport.wire import mydrive_pb2 as pb
    from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc

    with _channel(address, peer_root) as channel:
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
    p.add_argument("--store-only", action="store_true", help="no fetch phase")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--peer", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        _serve(args.serve, args.peer)
        return 0
    with tempfile.TemporaryDirectory(dir=args.work_dir, prefix="grpc-ab-") as tmp:
        procs: dict[str, tuple[subprocess.Popen[str], list[str]]] = {}
        try:
            for v in args.variants:
                proc = subprocess.Popen([sys.executable, "-m", "benchmarks.grpc_server_ab",
                                         "--serve", v, "--peer", str(Path(tmp) / v)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        text=True, start_new_session=True)
                assert proc.stdout is not None
                procs[v] = (proc, proc.stdout.readline().split())
            rows: dict[str, dict[str, list[tuple[float, float, float]]]] = {
                v: {"store": [], "fetch": []} for v in args.variants}
            gib = args.chunks * CHUNK_BYTES / (1024 * MiB)

            def measured(r: int, v: str, phase: str, pid: int, work: Any, *args: Any) -> None:
                (u0, s0), t0 = session_cpu_split_s(pid), time.perf_counter()
                work(*args)
                wall = time.perf_counter() - t0
                u1, s1 = session_cpu_split_s(pid)
                rows[v][phase].append((gib * 1024 * MiB / wall / 1e6,
                                       (u1 - u0 + s1 - s0) / gib, (s1 - s0) / gib))
                mb_s, cpu, kernel = rows[v][phase][-1]
                print(f"round {r + 1} {v} {phase}: {mb_s:.1f} MB/s, {cpu:.2f} CPU s/GiB "
                      f"({kernel:.2f} kernel)", flush=True)

            for r in range(args.rounds):
                for v, (proc, addresses) in procs.items():
                    chunks = _chunks(args.chunks)  # fresh ids: nothing is already held
                    peer_root = Path(tmp) / v
                    measured(r, v, "store", proc.pid, _store_all, addresses[0], chunks,
                             args.streams, peer_root)
                    if len(addresses) == 3 and not args.store_only:
                        measured(r, v, "fetch", proc.pid, _fetch_all, addresses[1],
                                 addresses[2], chunks, args.streams, peer_root)
            peaks = {v: peak_rss_bytes(proc.pid) / MiB for v, (proc, _) in procs.items()}
        finally:
            for proc, _ in procs.values():
                if proc.stdin is not None:
                    proc.stdin.close()
                proc.wait(timeout=30)
    print(f"\n{args.chunks} chunks of 4 MiB, {args.streams} streams, median of {args.rounds}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| server variant | store MB/s | receiver CPU s/GiB (kernel) | fetch MB/s | "
          "sender CPU s/GiB (kernel) | peak RSS MiB |\n|---|---|---|---|---|---|")
    for v, phases in rows.items():
        cells = []
        for samples in phases.values():
            if not samples:
                cells.append("| – | –")
                continue
            cells.append(f"| {statistics.median(s[0] for s in samples):.1f} | "
                         f"{statistics.median(s[1] for s in samples):.2f} "
                         f"({statistics.median(s[2] for s in samples):.2f})")
        print(f"| {v} {json.dumps(VARIANTS[v]) if VARIANTS[v] else ''} {' '.join(cells)} "
              f"| {peaks[v]:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
