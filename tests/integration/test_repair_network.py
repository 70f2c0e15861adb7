"""Issue 15 end to end: 6 real peers on loopback, the real CLI, a peer's disk lost for good,
`mydrive check --repair`, a second peer lost, and a repair SIGKILLed half way."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from mydrive.errors import ChunkNotFound, DataLoss
from mydrive.formats.filerecord import ChunkRecord
from mydrive.node import cluster
from mydrive.node.peerdir import PeerDir
from mydrive.storage.chunkstore import ChunkStore
from tests.integration.conftest import PASSPHRASE, LocalNetwork

pytestmark = pytest.mark.integration

KiB = 1024
SMALL = {"chunk_size_bytes": 256 * KiB, "segment_size_bytes": 16 * KiB}
PEERS = 6


def _ids(net: LocalNetwork) -> dict[str, str]:
    """peer id -> peer name."""
    return {PeerDir(net.peer_dir(i)).config.peer_id: f"peer-{i}" for i in range(PEERS)}


def _store(net: LocalNetwork, name: str) -> ChunkStore:
    """The peer's chunk store, opened to be read (no test reads its files directly)."""
    return ChunkStore(net.home / name / "store", capacity_bytes=2**62, inspect_only=True)


def _holds(net: LocalNetwork, name: str, chunk_id: str) -> bool:
    return _store(net, name).has(bytes.fromhex(chunk_id))


def _on_disk(net: LocalNetwork, name: str) -> set[str]:
    return {c.hex() for c in _store(net, name).chunk_ids()}


def _holds_good(net: LocalNetwork, name: str, chunk_id: str, digest_alg: str) -> bool:
    """The peer's disk holds the chunk whole: its bytes are the chunk its id names under the
    file's scheme (a derived id is checked against the segment digests of the chunk's
    stored header, which it commits to)."""
    store, cid = _store(net, name), bytes.fromhex(chunk_id)
    try:
        header = store.header(cid)
        data = store.ciphertext(cid)
    except (ChunkNotFound, DataLoss):
        return False
    chunk = ChunkRecord(index=0, chunk_id=cid, size_bytes=header.chunk_size_bytes,
                        segment_size_bytes=header.segment_size_bytes,
                        segment_digests=header.segment_digests, replicas=())
    return header.chunk_id == chunk.chunk_id and header.digest_alg == digest_alg \
        and chunk.matches_ciphertext(data, digest_alg)


def _inspect_all(net: LocalNetwork, remotes: list[str]) -> dict[str, Any]:
    return {r: net.json("inspect", r) for r in remotes}


def _assert_no_full_file(net: LocalNetwork, infos: dict[str, Any], when: str) -> None:
    for remote, info in infos.items():
        ids = {c["chunk_id"] for c in info["chunks"]}
        for i in range(PEERS):
            held = {c for c in ids if _holds(net, f"peer-{i}", c)}
            assert len(held) < len(ids), f"{when}: peer-{i} holds every chunk of {remote}"


def _put_files(net: LocalNetwork, tmp_path: Path, sizes: dict[str, int]) -> dict[str, Path]:
    net.mydrive("user", "create")
    sources = {}
    for remote, size in sizes.items():
        src = tmp_path / f"src-{remote.strip('/').replace('/', '_')}"
        src.write_bytes(os.urandom(size))
        sources[remote] = src
        net.mydrive("put", str(src), remote)
    return sources


def _lose_disk(net: LocalNetwork, name: str) -> None:
    """The peer's chunk store is gone for good; the peer comes back with an empty disk."""
    cluster.stop(net.home, only=[name], hard=True)
    shutil.rmtree(net.home / name / "store")
    cluster.start(net.home, only=[name])


def test_repair_network_restores_r_after_permanent_loss(network_factory,
                                                        tmp_path: Path) -> None:
    """One replica peer's data deleted for good: check names exactly its replicas; --repair
    restores R everywhere; a second original replica peer killed, every file still downloads
    bit-identical; no peer holds a whole file at any point."""
    net = network_factory(PEERS, **SMALL)
    sizes = {"/a.bin": 300 * KiB, "/docs/b.bin": 1024 * KiB, "/docs/c.bin": 2600 * KiB,
             "/tiny": 5}
    sources = _put_files(net, tmp_path, sizes)
    ids = _ids(net)
    owner = PeerDir(net.peer_dir(0)).config.peer_id
    before = _inspect_all(net, list(sizes))
    _assert_no_full_file(net, before, "after put")
    victim = before["/docs/c.bin"]["chunks"][0]["replicas"][0]
    assert victim != owner
    lost = {(info["file_id"], c["index"], victim) for info in before.values()
            for c in info["chunks"] if victim in c["replicas"]}
    _lose_disk(net, ids[victim])
    _assert_no_full_file(net, before, "after the loss")

    result = net.mydrive("check", "--all", "--json", check=False)
    assert result.returncode == 12, result.stderr  # degraded, and said so
    report = json.loads(result.stdout)
    reported = {(f["file_id"], item["chunk"], item["peer"]) for f in report["files"]
                for item in f["lost"]}
    assert reported == lost
    assert {item["state"] for f in report["files"] for item in f["lost"]} == {"missing"}
    assert report["summary"]["good"] == report["summary"]["replicas"] - len(lost)
    assert report["audits"]["replicas"] == report["summary"]["replicas"]
    assert report["audits"]["bytes"] > 0

    repaired = net.json("check", "--all", "--repair")
    assert repaired["healthy"] and repaired["after"]["chunks_below_r"] == 0
    assert repaired["repair"]["replicated"] == len(lost)
    assert repaired["repair"]["bytes_stored"] > 0 and repaired["repair"]["errors"] == []
    assert repaired["totals"]["replicas_repaired"] == len(lost)
    after = _inspect_all(net, list(sizes))
    _assert_no_full_file(net, after, "after repair")
    for info in after.values():
        for chunk in info["chunks"]:
            assert len(chunk["replicas"]) == 2 and owner not in chunk["replicas"]
            for peer_id in chunk["replicas"]:
                assert _holds_good(net, ids[peer_id], chunk["chunk_id"],
                                   info["digest_alg"]), chunk
    again = net.json("check", "--all", "--repair")
    assert again["healthy"] and again["repair"]["replicated"] == 0
    assert again["repair"]["bytes_stored"] == 0
    # One pass of the background loop: audits, nothing to repair, metrics written.
    prom = tmp_path / "durability.prom"
    line = net.mydrive("durability", "run", "--once", "--json", "--audits-per-pass", "8",
                       "--metrics-file", str(prom)).stdout
    one_pass = json.loads(line)
    assert one_pass["audits"]["replicas"] == 8
    assert one_pass["summary"]["chunks_below_r"] == 0 and one_pass["totals"]["passes"] == 1
    assert 'mydrive_durability_audits_total{state="good"} 8' in prom.read_text()

    originals = {p for info in before.values() for c in info["chunks"] for p in c["replicas"]}
    second = max(sorted(originals - {victim}),
                 key=lambda p: sum(p in c["replicas"] for i in after.values()
                                   for c in i["chunks"]))
    cluster.stop(net.home, only=[ids[second]], hard=True)
    out = tmp_path / "out"
    for remote, src in sources.items():
        got = net.json("get", remote, "--out", str(out), "--overwrite")
        assert Path(got["path"]).read_bytes() == src.read_bytes(), remote
    # A peer that is merely unreachable is waited for (grace period), not replaced.
    waiting = json.loads(net.mydrive("check", "--all", "--json", check=False).stdout)
    states = {r["state"] for f in waiting["files"] for c in f["chunks"] for r in c["replicas"]
              if r["peer"] == second}
    assert states == {"unreachable"}
    assert waiting["summary"]["missing"] == 0
    _assert_no_full_file(net, after, "at the end")


def test_repair_network_sigkilled_repair_loses_nothing_and_rerun_finishes(
        network_factory, tmp_path: Path) -> None:
    """A paced repair SIGKILLed once new copies start landing leaves every chunk with at
    least the verified replicas it had; running it again restores R and leaves no copy on
    any disk that the records do not list."""
    net = network_factory(PEERS, **SMALL)
    sizes = {"/big.bin": 4 * 1024 * KiB, "/small.bin": 600 * KiB}
    sources = _put_files(net, tmp_path, sizes)
    ids = _ids(net)
    before = _inspect_all(net, list(sizes))
    victim = before["/big.bin"]["chunks"][0]["replicas"][0]
    _lose_disk(net, ids[victim])
    good_before = {(r, c["index"]): sum(_holds_good(net, ids[p], c["chunk_id"],
                                                    info["digest_alg"])
                                        for p in c["replicas"])
                   for r, info in before.items() for c in info["chunks"]}
    on_disk_before = {name: _on_disk(net, name) for name in ids.values()}
    env = {**os.environ, "MYDRIVE_PEER": str(net.peer_dir(0)), "MYDRIVE_USER": "alice",
           "MYDRIVE_PASSPHRASE": PASSPHRASE}
    # 256 KiB/s: each repaired chunk (fetched + stored) takes about two seconds.
    proc = subprocess.Popen([sys.executable, "-m", "mydrive", "check", "--all", "--repair",
                             "--max-bytes-per-s", str(256 * KiB), "--json"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        landed = False
        while time.monotonic() < deadline and proc.poll() is None:
            now = {name: _on_disk(net, name) for name in ids.values()}
            if any(now[n] - on_disk_before[n] for n in now):
                landed = True
                break
            time.sleep(0.05)
        assert landed and proc.poll() is None, "the repair ended before it could be killed"
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    mid = _inspect_all(net, list(sizes))
    for remote, info in mid.items():
        for c in info["chunks"]:
            good = sum(_holds_good(net, ids[p], c["chunk_id"], info["digest_alg"])
                       for p in c["replicas"])
            assert good >= good_before[(remote, c["index"])], (remote, c["index"])
    _assert_no_full_file(net, mid, "after the kill")

    rerun = net.json("check", "--all", "--repair")
    assert rerun["healthy"] and rerun["after"]["chunks_below_r"] == 0
    after = _inspect_all(net, list(sizes))
    _assert_no_full_file(net, after, "after the rerun")
    for info in after.values():
        for c in info["chunks"]:
            holders = {pid for pid, name in ids.items()
                       if _holds(net, name, c["chunk_id"])}
            assert holders == set(c["replicas"]), c
            assert all(_holds_good(net, ids[p], c["chunk_id"], info["digest_alg"])
                       for p in c["replicas"])
    out = tmp_path / "out"
    for remote, src in sources.items():
        got = net.json("get", remote, "--out", str(out), "--overwrite")
        assert Path(got["path"]).read_bytes() == src.read_bytes(), remote
