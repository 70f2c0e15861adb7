"""nginx reaches the services over unix sockets: a put and a get through them, end to end."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from mydrive.node.service_socket import service_socket
from tests.integration.conftest import LocalNetwork, start_network

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(os.name != "posix", reason="unix sockets: TCP on Windows")]


def test_put_and_get_through_nginx_over_unix_sockets(open_home: Path, tmp_path: Path) -> None:
    net: LocalNetwork = start_network(open_home, 4, tls=True, replicas=2)
    for i in range(3):
        conf = (net.peer_dir(i) / "nginx" / "nginx.conf").read_text()
        for kind in ("receiver", "sender"):
            # PEER_DIR/<kind>.sock, or a root-run peer's in its runtime directory
            sock = service_socket(net.peer_dir(i), kind)
            assert sock is not None and sock.is_socket()
            assert f"grpc_pass grpc://unix:{sock};" in conf
    net.round_trip_through_nginx(tmp_path, "uds.bin", 3 * 1024 * 1024 + 17)
