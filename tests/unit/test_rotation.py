"""Passphrase rotation: old refused, new works, files intact, nothing sent, crash-atomic."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

from mydrive.cli.main import cli
from mydrive.errors import BadRequest, WrongPassphrase
from mydrive.node.local_client import open_client
from tests.clientnet import client_net
from tests.strategies import FAST_KDF, random_file

OLD = "old passphrase"
NEW = "new passphrase"


class NoTransport:
    """A transport that fails the test on any call: rotation must not touch the network."""

    def close(self) -> None:
        pass  # PeerClient.close closes its transport; that sends nothing

    def __getattr__(self, name: str):
        raise AssertionError(f"rotation used the transport ({name})")


def _received_bytes(net) -> float:
    return sum(p.metrics.value("receiver_bytes_received_total")
               for p in net.transport.peers.values())


def test_rotate_passphrase_keeps_files_and_moves_nothing(tmp_path: Path) -> None:
    """Old passphrase refused, new works, every file bit-identical, zero bytes moved."""
    net = client_net(tmp_path / "net")
    c = net.client()
    c.create_user("alice", OLD)
    a = c.login("alice", OLD)
    sources = {f"/f{i}.bin": random_file(tmp_path / f"f{i}.bin", 30_000 * (i + 1))
               for i in range(3)}
    for remote, src in sources.items():
        c.put(a, src, remote)
    received = _received_bytes(net)
    files_before = {d: doc for d, doc in c.store.list_prefix("file:")}
    stored_before = {p: sorted(net.chunk_store(p).chunk_ids()) for p in net.peer_ids}

    offline = open_client(net.dirs[0].root, transport=NoTransport(), clock=net.clock,
                         kdf_costs=FAST_KDF)
    old_record = offline.user_record("alice")
    new_record = offline.rotate_passphrase("alice", OLD, NEW)
    offline.close()

    assert new_record.kdf.salt != old_record.kdf.salt
    assert new_record.identity_public_key == old_record.identity_public_key
    assert _received_bytes(net) == received  # receivers saw not one more byte
    assert {d: doc for d, doc in c.store.list_prefix("file:")} == files_before
    assert {p: sorted(net.chunk_store(p).chunk_ids()) for p in net.peer_ids} == stored_before
    with pytest.raises(WrongPassphrase):
        c.login("alice", OLD)
    a2 = c.login("alice", NEW)
    assert a2.master_key == a.master_key
    for remote, src in sources.items():
        path, _ = c.get(a2, remote, out_dir=tmp_path / "out")
        assert path.read_bytes() == src.read_bytes()


def test_rotate_passphrase_refuses_wrong_current_and_same(tmp_path: Path) -> None:
    """Wrong current passphrase: WrongPassphrase; new == current: BadRequest; doc unchanged."""
    net = client_net(tmp_path / "net", 1)
    c = net.client()
    c.create_user("alice", OLD)
    before = c.store.get("user:alice")
    with pytest.raises(WrongPassphrase):
        c.rotate_passphrase("alice", "not it", NEW)
    with pytest.raises(BadRequest, match="same as the current"):
        c.rotate_passphrase("alice", OLD, OLD)
    assert c.store.get("user:alice") == before


_CRASHER = textwrap.dedent("""
    import os, sys
    from mydrive.node.local_client import open_client
    from mydrive.testing.memory_transport import MemoryTransport
    peer_dir, when = sys.argv[1], sys.argv[2]
    c = open_client(__import__("pathlib").Path(peer_dir), transport=MemoryTransport(),
                   kdf_costs={"time_cost": 1, "memory_kib": 8192, "parallelism": 1})
    real = c.store._db

    class Dying:
        def execute(self, sql, *args):
            if sql == "COMMIT" and when == "before-commit":
                os._exit(9)   # the process dies with the transaction open
            out = real.execute(sql, *args)
            if sql == "COMMIT" and when == "after-commit":
                os._exit(9)
            return out

    c.store._db = Dying()
    c.rotate_passphrase("alice", "old passphrase", "new passphrase")
    os._exit(0)
""")


@pytest.mark.parametrize(("when", "works", "fails"), [("before-commit", OLD, NEW),
                                                      ("after-commit", NEW, OLD)])
def test_rotate_passphrase_crash_leaves_old_or_new(tmp_path: Path, when: str, works: str,
                                                   fails: str) -> None:
    """A process killed mid-rotation leaves exactly one of old/new passphrase working."""
    net = client_net(tmp_path / "net", 1)
    c = net.client()
    c.create_user("alice", OLD)
    c.close()
    proc = subprocess.run([sys.executable, "-c", _CRASHER, str(net.dirs[0].root), when],
                          env={**os.environ, "PYTHONPATH": str(Path.cwd())},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    c = net.client()
    assert c.login("alice", works).user_id
    with pytest.raises(WrongPassphrase):
        c.login("alice", fails)


def test_cli_rotate_passphrase_reads_env(tmp_path: Path) -> None:
    """`mydrive user rotate-passphrase` takes MYDRIVE_PASSPHRASE and MYDRIVE_NEW_PASSPHRASE."""
    net = client_net(tmp_path / "net", 1)
    c = net.client()
    c.create_user("alice", OLD)
    peer = str(net.dirs[0].root)
    runner = CliRunner()
    res = runner.invoke(cli, ["user", "rotate-passphrase", "--peer", peer, "--user", "alice"],
                        env={"MYDRIVE_PASSPHRASE": "wrong", "MYDRIVE_NEW_PASSPHRASE": NEW})
    assert res.exit_code == WrongPassphrase.exit_code, res.output
    assert "wrong passphrase for user 'alice'" in res.output
    res = runner.invoke(cli, ["user", "rotate-passphrase", "--peer", peer, "--user", "alice"],
                        env={"MYDRIVE_PASSPHRASE": OLD, "MYDRIVE_NEW_PASSPHRASE": NEW})
    assert res.exit_code == 0, res.output
    assert "no file data was re-encrypted" in res.output
    assert c.login("alice", NEW).user_id
