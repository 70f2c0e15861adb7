"""`mydrive serve ui` under both WSGI servers, and `mydrive cluster up` printing the UI URLs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from mydrive.node.peerdir import PeerDir, init_peer
from mydrive.node.ui_address import ui_healthy, ui_url

pytestmark = pytest.mark.integration


def _get(url: str, data: bytes | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


@pytest.mark.parametrize("server", ["waitress", "gunicorn"])
def test_ui_serve_runs_under_each_wsgi_server(tmp_path: Path, server: str) -> None:
    """The UI answers on loopback under waitress and gunicorn, refuses token-less POSTs,
    and stops on SIGTERM."""
    peer = init_peer(tmp_path / "peer")
    log = (tmp_path / "ui.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "mydrive", "serve", "ui", str(peer.root),
                             "--server", server], stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not ui_healthy(peer.config):
            assert proc.poll() is None, (tmp_path / "ui.log").read_text()
            assert time.monotonic() < deadline, "UI not healthy in 30 s"
            time.sleep(0.1)
        status, body = _get(ui_url(peer.config) + "login")
        assert status == 200 and "Log in to mydrive" in body
        status, _ = _get(ui_url(peer.config) + "welcome",
                         data=b"user_name=eve&passphrase=longenough1&confirm=longenough1")
        assert status == 403
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=20)
        log.close()
    assert f"({server})" in (tmp_path / "ui.log").read_text()
    with pytest.raises(Exception, match="no user"):
        from mydrive.node.local_client import open_client

        client = open_client(peer.root)
        try:
            client.user_record("eve")
        finally:
            client.close()


def test_ui_cluster_up_prints_every_peers_ui_url(tmp_path: Path) -> None:
    """`cluster up` starts a healthy UI per peer and prints where to open it."""
    home = tmp_path / "net"
    env = {**os.environ}
    run = [sys.executable, "-m", "mydrive", "cluster"]
    try:
        out = subprocess.run([*run, "up", "--home", str(home), "--peers", "3", "--no-tls",
                              "--detach"], capture_output=True, text=True, env=env,
                             timeout=120, check=True, stdin=subprocess.DEVNULL).stdout
        urls = dict(re.findall(r"^UI of (peer-\d): (\S+)$", out, re.MULTILINE))
        assert set(urls) == {"peer-0", "peer-1", "peer-2"}, out
        for name, url in urls.items():
            config = PeerDir(home / name).config
            assert url == ui_url(config) == f"http://127.0.0.1:{config.ui_backend_port}/"
            assert ui_healthy(config)
    finally:
        subprocess.run([*run, "down", "--home", str(home)], capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
