"""Accounts over real processes: owner-only access, signed requests, rotation, rm and gc.

Five peers run as separate `mydrive serve` processes on loopback; users act through the real
CLI on peer-0, as they would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mydrive.node import cluster
from mydrive.node.local_client import open_client
from mydrive.node.peerdir import PeerDir
from mydrive.runtime.clock import SystemClock
from mydrive.storage.chunkstore import ChunkStore
from mydrive.transport.signed_delete import sign_delete
from mydrive.transport.signed_fetch import sign_fetch
from mydrive.transport.wire import mydrive_pb2 as pb
from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc
from tests.markerscan import marker_forms, scan_paths

PASS_A = "alice integration passphrase"
PASS_B = "bob integration passphrase"
NEW_A = "alice rotated passphrase"


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "net"
    cluster.create(home, 5, replicas=2)
    try:
        cluster.start(home)
        yield home
    finally:
        cluster.stop(home)  # only the PIDs this test started


def _cli(home: Path, *args: str, user: str, passphrase: str, check: bool = True,
         extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MYDRIVE_PEER": str(home / "peer-0"), "MYDRIVE_USER": user,
           "MYDRIVE_PASSPHRASE": passphrase, **(extra_env or {})}
    result = subprocess.run([sys.executable, "-m", "mydrive", *args], env=env, text=True,
                            capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"mydrive {' '.join(args)}: {result.returncode}\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def _peers(home: Path) -> dict[str, dict[str, object]]:
    return {str(p["peer_id"]): p for p in cluster.status(home)}


def _received_bytes(home: Path) -> float:
    total = 0.0
    for p in cluster.status(home):
        for s in p["services"]:
            if s.kind == "receiver":
                with urllib.request.urlopen(s.metrics_url, timeout=5) as r:  # noqa: S310
                    for line in r.read().decode().splitlines():
                        if line.startswith("mydrive_receiver_bytes_received_total"):
                            total += float(line.split()[-1])
    return total


def _holders(home: Path, chunk_ids: list[bytes]) -> dict[str, set[bytes]]:
    out = {}
    for peer_id, p in _peers(home).items():
        store = ChunkStore(PeerDir(Path(str(p["dir"]))).store_dir, capacity_bytes=2**40)
        out[str(p["name"])] = {c for c in chunk_ids if store.has(c)}
    return out


def _grpc_code(call) -> grpc.StatusCode:
    try:
        result = call()
        if hasattr(result, "__iter__"):
            list(result)
    except grpc.RpcError as exc:
        return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.integration
def test_accounts_over_real_processes(home: Path, tmp_path: Path) -> None:
    """Owner-only, signed-request checks, rotation moving zero bytes, rm and gc after return."""
    marker = f"MARKER-{uuid.uuid4().hex}"
    _cli(home, "user", "create", user="alice", passphrase=PASS_A)
    _cli(home, "user", "create", user="bob", passphrase=PASS_B)
    dup = _cli(home, "user", "create", user="bob", passphrase=PASS_B, check=False)
    assert dup.returncode == 3 and "'bob' already exists" in dup.stderr
    src1 = tmp_path / f"{marker}.txt"
    src1.write_bytes((marker.encode() + b"\n" + os.urandom(300)) * 3000)
    src2 = tmp_path / "two.bin"
    src2.write_bytes(os.urandom(700_000))
    info1 = json.loads(_cli(home, "put", str(src1), f"/{marker}/one.txt", "--json",
                            user="alice", passphrase=PASS_A).stdout)
    _cli(home, "put", str(src2), "/two.bin", user="alice", passphrase=PASS_A)

    # Bob sees nothing of Alice's and gets the precise error for her path.
    ls_b = json.loads(_cli(home, "ls", "--json", user="bob", passphrase=PASS_B).stdout)
    assert ls_b == {"files": []}
    got = _cli(home, "get", "/two.bin", user="bob", passphrase=PASS_B, check=False)
    assert got.returncode == 4 and "no file '/two.bin' for this user" in got.stderr
    wrong = _cli(home, "ls", user="alice", passphrase=PASS_B, check=False)
    assert wrong.returncode == 3 and "wrong passphrase for user 'alice'" in wrong.stderr

    # Signed requests straight at the services: other owner, wrong peer, replay.
    client = open_client(home / "peer-0")
    bob = client.login("bob", PASS_B)
    alice = client.login("alice", PASS_A)
    client.close()
    peers = _peers(home)
    chunk = info1["chunks"][0]
    cid = bytes.fromhex(chunk["chunk_id"])
    x, y = chunk["replicas"]
    cfg = {pid: PeerDir(Path(str(p["dir"]))).config for pid, p in peers.items()}
    recv = {pid: pb_grpc.ReceiverStub(grpc.insecure_channel(c.receiver_address))
            for pid, c in cfg.items()}
    send = {pid: pb_grpc.SenderStub(grpc.insecure_channel(c.sender_address))
            for pid, c in cfg.items()}
    clock = SystemClock()
    d = sign_delete(bob.identity, chunk_ids=[cid], target_peer_id=x, clock=clock)
    assert _grpc_code(lambda: recv[x].DeleteChunks(
        pb.SignedDelete(request=d.request, signature=d.signature), timeout=10)) \
        == grpc.StatusCode.PERMISSION_DENIED
    f = sign_fetch(bob.identity, chunk_id=cid, target_peer_id=x, segment_indices=[],
                   clock=clock)
    assert _grpc_code(lambda: send[x].FetchChunk(
        pb.SignedFetch(request=f.request, signature=f.signature), timeout=10)) \
        == grpc.StatusCode.PERMISSION_DENIED
    f = sign_fetch(alice.identity, chunk_id=cid, target_peer_id=x, segment_indices=[],
                   clock=clock)
    msg = pb.SignedFetch(request=f.request, signature=f.signature)
    assert _grpc_code(lambda: send[y].FetchChunk(msg, timeout=10)) \
        == grpc.StatusCode.PERMISSION_DENIED  # signed for X, sent to Y
    assert _grpc_code(lambda: send[x].FetchChunk(msg, timeout=10)) == grpc.StatusCode.OK
    assert _grpc_code(lambda: send[x].FetchChunk(msg, timeout=10)) \
        == grpc.StatusCode.PERMISSION_DENIED  # replayed

    # Rotation: zero bytes moved, old refused, new downloads everything bit-identical.
    before = _received_bytes(home)
    _cli(home, "user", "rotate-passphrase", user="alice", passphrase=PASS_A,
         extra_env={"MYDRIVE_NEW_PASSPHRASE": NEW_A})
    assert _received_bytes(home) == before
    old = _cli(home, "ls", user="alice", passphrase=PASS_A, check=False)
    assert old.returncode == 3 and "wrong passphrase" in old.stderr
    out = tmp_path / "out"
    for remote, src in ((f"/{marker}/one.txt", src1), ("/two.bin", src2)):
        _cli(home, "get", remote, "--out", str(out), user="alice", passphrase=NEW_A)
        assert (out / remote.lstrip("/")).read_bytes() == src.read_bytes()

    # rm with one replica peer down; gc once it is back.
    ids = [bytes.fromhex(c["chunk_id"]) for c in info1["chunks"]]
    victim = str(peers[x]["name"])
    cluster.stop(home, only=[victim])
    rm = json.loads(_cli(home, "rm", f"/{marker}", "--recursive", "--json", user="alice",
                         passphrase=NEW_A).stdout)
    assert rm["removed"] == [f"/{marker}/one.txt"]
    assert list(rm["gc"]["pending"].values()) == [[x]]
    held = _holders(home, ids)
    assert held[victim] and all(not v for name, v in held.items() if name != victim)
    cluster.start(home, only=[victim])
    assert _holders(home, ids)[victim] == held[victim]  # back, still holding the orphans
    gc = json.loads(_cli(home, "gc", "--json", user="alice", passphrase=NEW_A).stdout)
    assert gc["pending"] == {} and gc["chunks_removed"] == len(held[victim])
    assert all(not v for v in _holders(home, ids).values())
    ls_a = json.loads(_cli(home, "ls", "--json", user="alice", passphrase=NEW_A).stdout)
    assert [e["path"] for e in ls_a["files"]] == ["/two.bin"]

    # Nothing readable on other peers (disks, logs, metadata) or in the owner's metadata.
    forms = marker_forms(marker.encode())
    assert scan_paths([home / f"peer-{i}" for i in range(1, 5)], forms) == []
    assert scan_paths([home / "peer-0"], forms, skip=[PeerDir(home / "peer-0").download_dir]) \
        == []
    assert scan_paths([tmp_path / f"{marker}.txt"], forms)  # control: the scan can fire
