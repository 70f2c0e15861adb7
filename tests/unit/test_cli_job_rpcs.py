"""`get` and `put` as jobs open one Control client, ask the service's identity once and read
the file's record once: each extra channel, RPC or verification of the user's file
documents is paid on every transfer (the CLI's fixed cost, docs/cli.md "Start-up")."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mydrive.cli.main import cli
from mydrive.client import PeerClient
from mydrive.node import local_client
from mydrive.node.jobs_control import UPLOAD_SOCKET_NAME, ControlClient
from mydrive.node.jobs_service import start_job_service
from tests.clientnet import ClientNet, client_net
from tests.strategies import random_file

PASSPHRASE = "alice passphrase"  # noqa: S105 - a test user's
RPC_NAMES = ("Identity", "SubmitDownload", "SubmitUpload", "GetJob", "ListJobs",
             "GetUploadResult", "FinishUpload", "CancelJob")


World = tuple[ClientNet, Path, Path]


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    """Peer 0 of an in-memory network with alice's /f.bin; the CLI's client of peer 0 is
    the network's (its transport and manual clock, which the job service's delegations are
    checked against)."""
    net = client_net(tmp_path / "n")
    c = net.client()
    c.create_user("alice", PASSPHRASE)
    a = c.login("alice", PASSPHRASE)
    src = random_file(tmp_path / "f.bin", 100_000)
    c.put(a, src, "/f.bin")
    monkeypatch.setattr(local_client, "open_client", lambda peer_dir, **_: net.client())
    yield net, src, net.dirs[0].root
    c.close()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Control clients opened ("clients"), Control RPCs by name, and PeerClient.find calls."""
    seen: Counter[str] = Counter()
    real_init, real_rpc, real_find = ControlClient.__init__, ControlClient._rpc, PeerClient.find

    def init(self: ControlClient, *args: Any, **kwargs: Any) -> None:
        seen["clients"] += 1
        real_init(self, *args, **kwargs)

    def rpc(self: ControlClient, fn: Any, request: object) -> object:
        seen[next(n for n in RPC_NAMES if getattr(self._stub, n) is fn)] += 1
        return real_rpc(self, fn, request)

    def find(self: PeerClient, *args: Any, **kwargs: Any) -> Any:
        seen["find"] += 1
        return real_find(self, *args, **kwargs)

    monkeypatch.setattr(ControlClient, "__init__", init)
    monkeypatch.setattr(ControlClient, "_rpc", rpc)
    monkeypatch.setattr(PeerClient, "find", find)
    return seen


def _mydrive(root: Path, *args: str) -> dict[str, Any]:
    result = CliRunner().invoke(cli, [*args, "--peer", str(root), "--user", "alice", "--json"],
                                env={"MYDRIVE_PASSPHRASE": PASSPHRASE})
    assert result.exit_code == 0, result.output
    out: dict[str, Any] = json.loads(result.stdout)
    return out


def test_get_as_a_job_opens_one_client_and_asks_identity_once(world: World, tmp_path: Path,
                                                            counted: Counter[str]) -> None:
    net, src, root = world
    service = start_job_service(root, net.client())
    try:
        out = _mydrive(root, "get", "/f.bin", "--out", str(tmp_path / "out"))
    finally:
        service.stop()
    assert out["job_id"] and Path(out["path"]).read_bytes() == src.read_bytes()
    assert counted["clients"] == 1 and counted["Identity"] == 1, counted
    assert counted["SubmitDownload"] == 1 and counted["find"] == 1, counted


def test_put_as_a_job_opens_one_client(world: World, tmp_path: Path, counted: Counter[str]) -> None:
    net, src, root = world
    service = start_job_service(root, net.client(), kind="upload")
    try:
        out = _mydrive(root, "put", str(src), "/again.bin")
    finally:
        service.stop()
    assert out["job_id"] and out["path"] == "/again.bin"
    assert counted["clients"] == 1 and counted["Identity"] == 1, counted
    assert counted["SubmitUpload"] == 1 and counted["FinishUpload"] == 1, counted


def test_identity_is_asked_once_per_client(world: World, counted: Counter[str]) -> None:
    net, src, root = world
    service = start_job_service(root, net.client())
    try:
        control = ControlClient(root)
        try:
            assert control.identity() == control.identity()
        finally:
            control.close()
    finally:
        service.stop()
    assert counted["Identity"] == 1


def test_open_control_is_none_without_a_service(world: World) -> None:
    from mydrive.node.jobs_control import open_control

    net, src, root = world
    assert open_control(root) is None
    assert open_control(root, UPLOAD_SOCKET_NAME) is None
