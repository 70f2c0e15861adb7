"""Four peers on CouchDB metadata (one real pouchdb-server each), through the real CLI:
roaming, catch-up after a metadata server outage, a partition with writes on both sides,
and bad input (unreachable server, wrong credentials, malformed replica documents)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from mydrive.metadata.couchdb import CouchStore
from mydrive.node import cluster
from mydrive.node.peerdir import PeerDir
from tests.tcpgate import TcpGate

pytestmark = pytest.mark.integration
PEERS = 4
CONVERGE_S = 30.0
PASS = "couch network passphrase"


def wait_for(what: str, check: Callable[[], bool], timeout_s: float = CONVERGE_S) -> float:
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.2)
    return time.monotonic() - start


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "net"
    try:
        cluster.create(home, PEERS, replicas=2, metadata="couchdb", tls=False)
        cluster.start(home)
        yield home
    finally:
        cluster.stop(home, hard=True)  # only the PIDs this test started


def cli(home: Path, peer: int, *args: str, user: str = "alice", passphrase: str = PASS,
        check: bool = True, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full = {**os.environ, "MYDRIVE_PEER": str(home / f"peer-{peer}"), "MYDRIVE_USER": user,
            "MYDRIVE_PASSPHRASE": passphrase, **(env or {})}
    result = subprocess.run([sys.executable, "-m", "mydrive", *args], env=full, text=True,
                            capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    if check and result.returncode != 0:
        raise AssertionError(f"mydrive {' '.join(args)}: {result.returncode}\n"
                             f"{result.stdout}\n{result.stderr}")
    return result


def store(home: Path, peer: int) -> CouchStore:
    s = PeerDir(home / f"peer-{peer}").open_metadata()
    assert isinstance(s, CouchStore)
    return s


def doc_everywhere(home: Path, doc_id: str) -> list[Any]:
    out = []
    for i in range(PEERS):
        with closing(store(home, i)) as s:
            out.append(s.get(doc_id))
    return out


def test_couchdb_network_roaming_user(home: Path, tmp_path: Path) -> None:
    """A user created and uploading on peer 0 logs in on peer 3, lists and downloads."""
    data = os.urandom(300_000)
    src = tmp_path / "report.bin"
    src.write_bytes(data)
    cli(home, 0, "user", "create")
    cli(home, 0, "put", str(src), "/docs/report.bin", "--json")
    took = wait_for("file doc on peer 3", lambda: len(json.loads(
        cli(home, 3, "ls", "--json", check=False).stdout or '{"files": []}')["files"]) == 1)
    print(f"user and file visible on peer 3 after {took:.1f} s")
    out = tmp_path / "out"
    cli(home, 3, "get", "/docs/report.bin", "--out", str(out))
    assert (out / "docs" / "report.bin").read_bytes() == data


def test_couchdb_network_returning_server_catches_up(home: Path) -> None:
    """Writes made while peer 1's CouchDB is down reach it (and everyone) soon after it returns."""
    cluster.stop(home, only=["peer-1"], kinds=("couchdb",))
    with closing(store(home, 0)) as s:
        for i in range(20):
            s.put(f"file:outage{i:02d}", {"type": "file", "version": 1, "i": i})
    time.sleep(3)  # let the other peers' pulls from peer 1 fail and back off
    cluster.start(home, only=["peer-1"], kinds=("couchdb",))
    took = wait_for("all 20 documents on every peer", lambda: all(
        len(store_list(home, i, "file:outage")) == 20 for i in range(PEERS)))
    print(f"converged {took:.1f} s after peer 1's CouchDB returned")


def store_list(home: Path, peer: int, prefix: str) -> list[Any]:
    with closing(store(home, peer)) as s:
        return s.list_prefix(prefix)


def test_couchdb_network_partition_converges_to_one_winner(home: Path) -> None:
    """A passphrase rotated on both sides of a partition ends as the later rotation on every
    peer, and that passphrase logs in everywhere."""
    gates = []
    try:
        # Route every pull through a gate in front of each server, so a partition is possible.
        with closing(store(home, 0)) as s:
            for i in range(PEERS):
                cfg = PeerDir(home / f"peer-{i}").config
                gate = TcpGate(cfg.couchdb_port)
                gates.append(gate)
                doc = s.get(f"peer:{cfg.peer_id}")
                assert doc is not None
                s.put(f"peer:{cfg.peer_id}", {**doc, "couchdb_url": gate.url})
        gate_ports = {str(g.port) for g in gates}
        wait_for("pulls go through the gates", lambda: all(
            replicator_ports(home, i) <= gate_ports and len(replicator_ports(home, i)) == 3
            for i in range(PEERS)))
        cli(home, 0, "user", "create", user="carol")
        wait_for("carol everywhere", lambda: None not in doc_everywhere(home, "user:carol"))
        for gate in gates:
            gate.close_gate()
        cli(home, 3, "user", "rotate-passphrase", user="carol",
            env={"MYDRIVE_NEW_PASSPHRASE": "side B passphrase"})
        time.sleep(0.05)
        cli(home, 0, "user", "rotate-passphrase", user="carol",
            env={"MYDRIVE_NEW_PASSPHRASE": "side A passphrase"})
        assert cli(home, 3, "ls", user="carol", passphrase="side B passphrase").returncode == 0
        for gate in gates:
            gate.open_gate()
        took = wait_for("one winner everywhere", lambda: len({
            json.dumps(d, sort_keys=True) for d in doc_everywhere(home, "user:carol")}) == 1
            and all(n == 1 for n in leaf_counts(home, "user:carol")))
        print(f"partition healed; converged in {took:.1f} s")
        for i in range(PEERS):  # the later rotation (side A) won on every peer
            cli(home, i, "ls", user="carol", passphrase="side A passphrase")
            bad = cli(home, i, "ls", user="carol", passphrase="side B passphrase", check=False)
            assert bad.returncode != 0 and "wrong passphrase" in bad.stderr
    finally:
        for gate in gates:
            gate.stop()


def replicator_ports(home: Path, peer: int) -> set[str]:
    with closing(store(home, peer)) as s:
        page = s.request("GET", "/_replicator/_all_docs",
                         params={"include_docs": "true"}).json()
    return {row["doc"]["source"].rsplit(":", 1)[1].split("/")[0] for row in page["rows"]
            if row["id"].startswith("mydrive-pull-")}


def leaf_counts(home: Path, doc_id: str) -> list[int]:
    out = []
    for i in range(PEERS):
        with closing(store(home, i)) as s:
            out.append(len(s.leaves(doc_id)))
    return out


def test_couchdb_network_bad_input(home: Path, tmp_path: Path) -> None:
    """Unreachable server and wrong credentials are clear CLI errors; garbage documents from
    a replica are skipped and logged, and every peer stays up."""
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(50_000))
    cli(home, 0, "user", "create")
    cli(home, 0, "put", str(src), "/a.bin")
    user_id = json.loads(json.dumps(doc_everywhere(home, "user:alice")[0]))["user_id"]
    with closing(store(home, 2)) as s:  # a misbehaving replica writes garbage
        s.request("PUT", f"/{s.db}/file:garbage", body={"type": "file", "version": 1,
                                                        "owner_id": user_id, "chunks": 7})
        s.request("PUT", f"/{s.db}/peer:garbage", body={"type": "peer", "peer_id": "!!",
                                                        "couchdb_url": "ftp://x"})
        s.request("PUT", f"/{s.db}/user:mallory", body={"type": "user", "version": 1,
                                                        "name": 5})
        s.request("PUT", f"/{s.db}/file:mismatch", body={"type": "user", "version": 1})
    wait_for("garbage on peer 0", lambda: store_list(home, 0, "file:garbage") != [])
    listing = cli(home, 0, "ls", "--json")
    assert [f["path"] for f in json.loads(listing.stdout)["files"]] == ["/a.bin"]
    assert "skipping untrusted file document 'file:garbage'" in listing.stderr
    bad_user = cli(home, 0, "ls", user="mallory", check=False)
    assert bad_user.returncode != 0 and "user document" in bad_user.stderr
    assert "Traceback" not in bad_user.stderr
    time.sleep(2)  # a few supervisor rounds over the garbage
    assert all(s.healthy for p in cluster.status(home) for s in p["services"])
    log = (home / "peer-0" / "logs" / "receiver.log").read_text()
    assert "malformed document 'file:mismatch' from a replica" in log
    assert "skipping peer document 'peer:garbage'" in log

    # Wrong credentials: a clear error naming the user, not the password.
    peer1 = home / "peer-1" / "peer.json"
    config = json.loads(peer1.read_text())
    peer1.write_text(json.dumps({**config, "couchdb_password": "not-the-password"}))
    try:
        wrong = cli(home, 1, "ls", check=False)
        assert wrong.returncode == 10 and "refused the credentials" in wrong.stderr
        assert "not-the-password" not in wrong.stderr and "Traceback" not in wrong.stderr
    finally:
        peer1.write_text(json.dumps(config))

    # Unreachable: peer 1's CouchDB stopped.
    cluster.stop(home, only=["peer-1"], kinds=("couchdb",))
    down = cli(home, 1, "ls", check=False)
    assert down.returncode == 10 and "unreachable" in down.stderr
    assert "Traceback" not in down.stderr
