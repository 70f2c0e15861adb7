"""nginx reaches the services over unix sockets: a put and a get through them, end to end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.integration.conftest import LocalNetwork, start_network

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.name != "posix", reason="unix sockets: TCP on Windows")]


def test_put_and_get_through_nginx_over_unix_sockets(open_home: Path, tmp_path: Path) -> None:
    net: LocalNetwork = start_network(open_home, 4, tls=True, replicas=2)
    for i in range(3):
        conf = (net.peer_dir(i) / "nginx" / "nginx.conf").read_text()
        assert f"grpc_pass grpc://unix:{net.peer_dir(i).resolve()}/receiver.sock;" in conf
        assert f"grpc_pass grpc://unix:{net.peer_dir(i).resolve()}/sender.sock;" in conf
    net.round_trip_through_nginx(tmp_path, "uds.bin", 3 * 1024 * 1024 + 17)
