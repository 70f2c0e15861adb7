"""A/B of the peer's own disk paths, without gRPC or TLS: receiving and serving chunks.

    .venv/bin/python -m benchmarks.peer_paths --against HEAD~3 [--chunks 64] [--threads 4]
        [--chunk-kib 4096]

``receive``: ``--threads`` streams at once each take ``--chunks / threads`` chunks of
``--chunk-kib`` (4 MiB: 16 segments of 256 KiB; a smaller chunk is one segment; small chunks
make the store's per-chunk costs stand out) through ``ReceiverSession`` (header, segments,
round end = verify, fsync, commit) into a fresh chunk store under ``--work-dir``.
``serve``: the same chunks are streamed back whole through ``ChunkServer._stream`` (the
sender after its checks). Each figure is MB/s of chunk bytes and CPU seconds (user + system
of the process) per GiB, and receive CPU milliseconds per chunk.

With ``--against REV`` the mydrive package of REV (``git archive``, no worktree) and that of
the working tree are measured alternately (A B B A ...), ``--rounds`` times each, so both
see the same machine load, and a trend (such as the load or the effect of earlier deletions
fading) favours neither; medians are printed side by side. The stores are deleted only at
the end: on ext4 without a journal (this test-bed's disk) a deletion slows the file
creations of the next minutes, so a run started soon after another invocation pays for its
deletions. Linux test-bed only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024
KiB = 1024
SEGMENT_BYTES = 256 * KiB


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _chunks(count: int, chunk_bytes: int) -> list[tuple[Any, list[bytes]]]:
    from mydrive.formats import digest as digests
    from mydrive.formats.chunkheader import ChunkHeader

    segment_bytes = min(SEGMENT_BYTES, chunk_bytes)
    out = []
    for _ in range(count):
        data = os.urandom(chunk_bytes)
        segments = [data[i:i + segment_bytes] for i in range(0, chunk_bytes, segment_bytes)]
        seg_digests = tuple(digests.digest(s) for s in segments)
        chunk_id = chunk_id_under_default_scheme(digests, data, segment_bytes, seg_digests)
        header = ChunkHeader(chunk_id=chunk_id,
                             digest_alg=digests.DIGEST_ALG, owner_public_key=b"\x01" * 32,
                             chunk_size_bytes=chunk_bytes, segment_size_bytes=segment_bytes,
                             segment_digests=seg_digests)
        out.append((header, segments))
    return out


def chunk_id_under_default_scheme(digests: Any, data: bytes, segment_bytes: int,
              seg_digests: tuple[bytes, ...]) -> bytes:
    """The chunk id under the tree's default scheme (``digests`` is the tree's
    ``mydrive.formats.digest``; one from before ``chunk_id_for`` knows only "blake3").
    Standalone (this file runs as a child with only the tree under test on its path), so
    grpc_server_ab imports it from here."""
    chunk_id_for = getattr(digests, "chunk_id_for", None)
    if chunk_id_for is None:
        return bytes(digests.digest(data))
    return bytes(chunk_id_for(digests.DIGEST_ALG, data, segment_bytes, seg_digests))


def _in_threads(threads: int, work: list[Any], fn: Any) -> None:
    slices = [work[i::threads] for i in range(threads)]
    errors: list[BaseException] = []

    def run(items: list[Any]) -> None:
        try:
            for item in items:
                fn(item)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    ts = [threading.Thread(target=run, args=(s,)) for s in slices]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]


def measure(store_dir: Path, *, chunks: int, threads: int,
            chunk_bytes: int) -> dict[str, Any]:
    """One measurement in this process, with whichever mydrive is importable."""
    import mydrive
    from mydrive.runtime.clock import SystemClock
    from mydrive.runtime.metrics import Metrics
    from mydrive.storage.chunkstore import ChunkStore
    from mydrive.storage.receiver import ReceiverSession
    from mydrive.storage.sender import ChunkServer

    work = _chunks(chunks, chunk_bytes)
    store = ChunkStore(store_dir, capacity_bytes=1 << 40)
    metrics = Metrics()

    def receive(item: tuple[Any, list[bytes]]) -> None:
        header, segments = item
        session = ReceiverSession(store, metrics)
        try:
            session.start(header)
            for i, seg in enumerate(segments):
                session.segment(i, seg)
            assert session.end_round() == []
        finally:
            session.close()

    # The sender's path after its checks (signature, nonce: once per fetch, not measured).
    server = ChunkServer(store, peer_id="bench", clock=SystemClock(),
                         replay_guard=None, metrics=metrics)  # type: ignore[arg-type]

    def serve(item: tuple[Any, list[bytes]]) -> None:
        header, segments = item
        indices = tuple(range(header.segment_count))
        for i, data in server._stream(header.chunk_id, indices, b"\0" * 16):
            assert len(data) == len(segments[i])

    total = chunks * chunk_bytes
    doc: dict[str, Any] = {"mydrive": str(Path(mydrive.__file__).parent)}
    for name, fn in (("receive", receive), ("serve", serve)):
        cpu0, t0 = _cpu_s(), time.perf_counter()
        _in_threads(threads, work, fn)
        wall, cpu = time.perf_counter() - t0, _cpu_s() - cpu0
        doc[name] = {"mb_s": round(total / wall / 1e6, 1),
                     "cpu_s_per_gib": round(cpu / (total / (1024 * MiB)), 2),
                     "cpu_ms_per_chunk": round(cpu * 1000 / chunks, 3)}
    return doc


def _child(source: Path, store_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(source)}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child",
                          "--store", str(store_dir), "--chunks", str(args.chunks),
                          "--threads", str(args.threads),
                          "--chunk-kib", str(args.chunk_kib)],
                         env=env, capture_output=True, text=True, check=True, cwd=source)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--against", help="git revision to compare the working tree with")
    p.add_argument("--chunks", type=int, default=64)
    p.add_argument("--threads", type=int, default=4)
    p.add_argument("--chunk-kib", type=int, default=4096,
                   help="chunk size in KiB (4096: 16 segments of 256 KiB)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp"))
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--store", type=Path, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.store, chunks=args.chunks, threads=args.threads,
                                 chunk_bytes=args.chunk_kib * KiB)))
        return 0
    with tempfile.TemporaryDirectory(dir=args.work_dir, prefix="peer-paths-") as tmp:
        sources = {"working tree": ROOT}
        if args.against:
            old = Path(tmp) / "against"
            old.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.against,
                                      "mydrive"], capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            sources = {args.against: old, **sources}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in sources}
        for r in range(args.rounds):
            order = list(sources.items())
            for name, source in order if r % 2 == 0 else reversed(order):  # A B B A ...
                store = Path(tmp) / f"store-{r}-{len(runs[name])}-{name.replace(' ', '_')}"
                runs[name].append(_child(source, store, args))
                # Kept until the end: ext4 without a journal (this test-bed's disk) passes
                # over inodes deleted in the last minutes when it allocates one, so deleting
                # a store here would slow the next run's file creations.
        print(f"{args.chunks} chunks of {args.chunk_kib} KiB, {args.threads} threads, median of "
              f"{args.rounds}; load average {os.getloadavg()[0]:.1f}")
        print(f"{'source':>14} | receive MB/s | receive CPU s/GiB | receive CPU ms/chunk | "
              f"serve MB/s | serve CPU s/GiB")
        for name, docs in runs.items():
            def med(kind: str, key: str, docs: list[dict[str, Any]] = docs) -> float:
                return round(float(statistics.median(d[kind][key] for d in docs)), 3)
            print(f"{name:>14} | {med('receive', 'mb_s'):12} | "
                  f"{med('receive', 'cpu_s_per_gib'):17} | "
                  f"{med('receive', 'cpu_ms_per_chunk'):20} | {med('serve', 'mb_s'):10} | "
                  f"{med('serve', 'cpu_s_per_gib'):15}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
