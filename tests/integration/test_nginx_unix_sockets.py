"""nginx reaches the services over unix sockets: a put and a get through them, end to end."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mydrive.node import cluster
from tests.integration.conftest import LocalNetwork, start_network

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.name != "posix", reason="unix sockets: TCP on Windows")]


@pytest.fixture
def open_home() -> Iterator[Path]:
    """A home every account may search (pytest's own temporary directories are 0700). nginx's
    workers run as the peer's account whoever starts nginx, so the sockets are used in
    either; this one is what a shared machine looks like (tests/integration/
    test_local_accounts.py attacks it)."""
    base = Path(tempfile.mkdtemp(prefix="md-uds-"))
    base.chmod(0o755)
    try:
        yield base / "net"
    finally:
        cluster.stop(base / "net", hard=True)
        shutil.rmtree(base, ignore_errors=True)


def test_put_and_get_through_nginx_over_unix_sockets(open_home: Path, tmp_path: Path) -> None:
    net: LocalNetwork = start_network(open_home, 4, tls=True, replicas=2)
    for i in range(3):
        conf = (net.peer_dir(i) / "nginx" / "nginx.conf").read_text()
        assert f"grpc_pass grpc://unix:{net.peer_dir(i).resolve()}/receiver.sock;" in conf
        assert f"grpc_pass grpc://unix:{net.peer_dir(i).resolve()}/sender.sock;" in conf
    net.round_trip_through_nginx(tmp_path, "uds.bin", 3 * 1024 * 1024 + 17)
