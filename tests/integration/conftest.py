"""Fixtures that run real mydrive peers as processes on loopback."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mydrive.errors import PeerUnavailable
from mydrive.node import cluster
from mydrive.node.jobs_control import SOCKET_NAME, ControlClient, JobView

PASSPHRASE = "integration passphrase 1"
JOB_WAIT_S = 600.0  # a job of a few hundred MiB on a loaded 2-core machine


@dataclass
class LocalNetwork:
    home: Path
    env: dict[str, str] = field(default_factory=dict)

    def peer_dir(self, i: int) -> Path:
        return self.home / f"peer-{i}"

    def cli_env(self, *, peer: int = 0, user: str | None = "alice",
                env: dict[str, str] | None = None,
                passphrase: str = PASSPHRASE) -> dict[str, str]:
        """The environment the real CLI runs in as ``user`` on ``peer``."""
        full_env = {**os.environ, "MYDRIVE_PEER": str(self.peer_dir(peer)),
                    "MYDRIVE_PASSPHRASE": passphrase, **(env or {})}
        if user is not None:
            full_env["MYDRIVE_USER"] = user
        return full_env

    def mydrive(self, *args: str, peer: int = 0, user: str | None = "alice",
                env: dict[str, str] | None = None, check: bool = True,
                passphrase: str = PASSPHRASE) -> subprocess.CompletedProcess[str]:
        """Run the real CLI as a user would."""
        full_env = self.cli_env(peer=peer, user=user, env=env, passphrase=passphrase)
        result = subprocess.run([sys.executable, "-m", "mydrive", *args], env=full_env,
                                capture_output=True, text=True, timeout=600,
                                stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"mydrive {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout}\n{result.stderr}")
        return result

    def json(self, *args: str, **kwargs: Any) -> Any:
        return json.loads(self.mydrive(*args, "--json", **kwargs).stdout)

    def round_trip_through_nginx(self, work: Path, name: str, size_bytes: int) -> None:
        """alice (created here) puts and gets ``size_bytes`` of random bytes as /``name``,
        bit-identical, and the first four peers' nginx logs show the StoreChunk and
        FetchChunk calls went through them (a TLS network)."""
        self.mydrive("user", "create")
        src = work / "src"
        src.write_bytes(os.urandom(size_bytes))
        self.mydrive("put", str(src), f"/{name}")
        got = self.json("get", f"/{name}", "--out", str(work / "out"))
        assert Path(got["path"]).read_bytes() == src.read_bytes()
        logged = "".join((self.peer_dir(i) / "nginx" / "logs" / "access.log").read_text()
                         for i in range(4))
        assert "/mydrive.v1.Receiver/StoreChunk" in logged
        assert "/mydrive.v1.Sender/FetchChunk" in logged

    def kill_cli_mid_job(self, *args: str, job_ids: Callable[[], set[str]],
                         running: Callable[[JobView], bool],
                         socket_name: str = SOCKET_NAME) -> tuple[str, JobView]:
        """Run ``mydrive *args`` as alice and SIGKILL it once the job it submitted (the id
        ``job_ids()`` gains) is ``running``; that id and the view the poll saw before the
        kill (the caller decides whether it caught the job mid-transfer)."""
        before = job_ids()
        cli = subprocess.Popen([sys.executable, "-m", "mydrive", *args], env=self.cli_env(),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + JOB_WAIT_S
            while not (job_ids() - before) and time.monotonic() < deadline:
                assert cli.poll() is None, f"mydrive {args[0]} ended before its job appeared"
                time.sleep(0.1)
            (job_id,) = job_ids() - before
            seen = self.poll_job(job_id, running, socket_name=socket_name)
            os.kill(cli.pid, signal.SIGKILL)
        finally:
            cli.kill()
            cli.wait()
        return job_id, seen

    def poll_job(self, job_id: str, until: Callable[[JobView], bool], *,
                 socket_name: str = SOCKET_NAME, peer: int = 0,
                 wait_s: float = JOB_WAIT_S) -> JobView:
        """Poll a peer's Control socket ``socket_name`` (the receiver's; UPLOAD_SOCKET_NAME:
        the sender's) directly until ``until(view)``; a service being restarted is ridden
        out. One channel serves every poll (a new one per poll takes long enough on a loaded
        machine for a fast job to pass from queued to done unseen)."""
        deadline = time.monotonic() + wait_s
        control: ControlClient | None = None
        try:
            while time.monotonic() < deadline:
                try:
                    control = control or ControlClient(self.peer_dir(peer),
                                                       socket_name=socket_name)
                    view = control.job(job_id)
                except PeerUnavailable:
                    if control is not None:
                        control.close()
                        control = None
                    time.sleep(0.2)
                    continue
                if until(view):
                    return view
                time.sleep(0.005)
        finally:
            if control is not None:
                control.close()
        raise AssertionError(f"job {job_id} did not get there in {wait_s} s")


def start_network(home: Path, peers: int, **overrides: Any) -> LocalNetwork:
    cluster.create(home, peers, **overrides)
    cluster.start(home)
    return LocalNetwork(home=home)


@pytest.fixture
def network_factory(tmp_path: Path) -> Iterator[Any]:
    homes: list[Path] = []

    def make(peers: int = 5, name: str = "net", **overrides: Any) -> LocalNetwork:
        home = tmp_path / name
        homes.append(home)
        return start_network(home, peers, **overrides)

    yield make
    for home in homes:
        cluster.stop(home, hard=True)


@pytest.fixture
def open_home() -> Iterator[Path]:
    """A network home every account may search, as on a shared machine (pytest's own
    temporary directories are 0700, which would stop another account before the service
    sockets' own mode is ever tested); its peers are stopped and it is removed after."""
    base = Path(tempfile.mkdtemp(prefix="md-open-"))
    base.chmod(0o755)
    try:
        yield base / "net"
    finally:
        cluster.stop(base / "net", hard=True)
        shutil.rmtree(base, ignore_errors=True)
