"""Issue 2 end to end: 5 real peers on loopback, the real CLI, SIGKILL and in-flight corruption."""

from __future__ import annotations

import json
import os
import urllib.request
from pathlib import Path

import pytest

from mydrive.node import cluster
from mydrive.node.peerdir import PeerDir
from mydrive.storage.chunkstore import ChunkStore
from mydrive.testing.faults import read_fault_log

pytestmark = pytest.mark.integration

MiB = 1024 * 1024


def _chunks_on_disk(peer_dir: Path) -> set[str]:
    store = ChunkStore(peer_dir / "store", capacity_bytes=2**62, inspect_only=True)
    return {c.hex() for c in store.chunk_ids()}


def _receiver_metric(peer_dir: Path, name: str) -> float:
    cfg = PeerDir(peer_dir).config
    url = f"http://{cfg.service_host}:{cfg.receiver_metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310
        for line in r.read().decode().splitlines():
            if line.startswith(f"mydrive_{name} ") or line.startswith(f"mydrive_{name}{{"):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def test_local_network_round_trip_survives_sigkill(network_factory, tmp_path: Path) -> None:
    """3 files: no peer holds all chunks; a replica peer SIGKILLed; all come back identical."""
    net = network_factory(5)
    net.mydrive("user", "create")
    sizes = {"/one-byte": 1, "/docs/five.bin": 5 * MiB, "/docs/forty.bin": 40 * MiB}
    sources = {}
    for remote, size in sizes.items():
        src = tmp_path / f"src-{size}"
        src.write_bytes(os.urandom(size))
        sources[remote] = src
        net.mydrive("put", str(src), remote)

    listing = net.json("ls")
    assert sorted(f["path"] for f in listing["files"]) == sorted(sizes)

    on_disk = {i: _chunks_on_disk(net.peer_dir(i)) for i in range(5)}
    assert on_disk[0] == set(), "the owner's own peer must hold none of its chunks"
    victim = None
    for remote in sizes:
        info = net.json("inspect", remote)
        chunk_ids = {c["chunk_id"] for c in info["chunks"]}
        assert info["chunk_count"] >= 2
        for i in range(1, 5):
            held = len(chunk_ids & on_disk[i])
            assert held < len(chunk_ids), f"peer-{i} holds every chunk of {remote}"
        assert max(info["chunks_per_peer"].values()) < info["chunk_count"]
        if remote == "/docs/forty.bin":
            victim_id = info["chunks"][0]["replicas"][0]
    for i in range(5):
        if PeerDir(net.peer_dir(i)).config.peer_id == victim_id:
            victim = f"peer-{i}"
    assert victim is not None

    cluster.stop(net.home, only=[victim], hard=True)  # SIGKILL, no goodbye
    out = tmp_path / "out"
    for remote, src in sources.items():
        result = net.json("get", remote, "--out", str(out))
        assert Path(result["path"]).read_bytes() == src.read_bytes(), remote
    # The download of the big file had to fail over away from the killed peer.
    assert not list(out.rglob("*.part"))


def test_local_network_resends_only_corrupted_segment(network_factory, tmp_path: Path) -> None:
    """Segments corrupted in flight are resent alone; the accounting shows exactly them."""
    net = network_factory(5)
    net.mydrive("user", "create")
    src = tmp_path / "src"
    src.write_bytes(os.urandom(9 * MiB))
    log = tmp_path / "faults.jsonl"
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"seed": 4, "corrupt_upload_rate": 0.02, "log": str(log)}))
    rejected_before = sum(_receiver_metric(net.peer_dir(i), "receiver_segments_rejected_total")
                          for i in range(5))
    net.mydrive("put", str(src), "/corrupted.bin", "--fault-plan", str(plan))
    info = net.json("inspect", "/corrupted.bin")
    index_of = {c["chunk_id"]: c["index"] for c in info["chunks"]}
    corrupted = sorted([index_of[e["chunk_id"]], e["segment"], e["peer"]]
                       for e in read_fault_log(log))
    # Seed 4 at 2% picks a few of the file's segment replicas (which ones depends on how the
    # file is cut: two with 8 MiB chunks, one with 4 MiB); never all of a chunk's.
    all_segments = sum(c["segments"] * len(c["replicas"]) for c in info["chunks"])
    assert 0 < len(corrupted) < all_segments // 4, corrupted
    upload = info["transfer"]["upload"]
    assert sorted(upload["resent"]) == corrupted
    assert upload["totals"]["segments_resent"] == len(corrupted)
    assert upload["totals"]["segments_rejected"] == len(corrupted)
    # Every segment went once per replica, plus exactly the corrupted ones again.
    assert upload["totals"]["segments_sent"] == all_segments + len(corrupted)
    rejected_after = sum(_receiver_metric(net.peer_dir(i), "receiver_segments_rejected_total")
                         for i in range(5))
    assert rejected_after - rejected_before == len(corrupted)
    result = net.json("get", "/corrupted.bin", "--out", str(tmp_path / "out"))
    assert Path(result["path"]).read_bytes() == src.read_bytes()
    # The old environment switch is inert: only --fault-plan turns the hooks on.
    stray = json.dumps({"seed": 4, "corrupt_upload_rate": 1.0, "log": str(log)})
    net.mydrive("put", str(src), "/stray.bin", env={"MYDRIVE_FAULTS": stray})
    assert net.json("inspect", "/stray.bin")["transfer"]["upload"]["resent"] == []
