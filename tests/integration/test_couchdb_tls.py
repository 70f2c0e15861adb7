"""CouchDB replication between peers goes through nginx's /couchdb/ route with mutual TLS."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from mydrive.node.peerdir import PeerDir

pytestmark = pytest.mark.integration


def _wait(check, timeout_s: float = 30.0) -> float:
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < timeout_s, "no convergence in time"
        time.sleep(0.2)
    return time.monotonic() - start


def test_couchdb_tls_replication_through_nginx(network_factory, tmp_path: Path) -> None:
    """A user and file made on peer 0 reach peer 2 over mTLS; CouchDB ports stay loopback."""
    net = network_factory(3, name="couch-tls", tls=True, metadata="couchdb", replicas=1)
    net.mydrive("user", "create")
    src = tmp_path / "f"
    src.write_bytes(os.urandom(100_000))
    net.mydrive("put", str(src), "/f")

    def listed_on_peer_2() -> bool:
        result = net.mydrive("ls", "--json", peer=2, check=False)
        return result.returncode == 0 and '"/f"' in result.stdout

    _wait(listed_on_peer_2)
    got = net.json("get", "/f", "--out", str(tmp_path / "out"), peer=2)
    assert Path(got["path"]).read_bytes() == src.read_bytes()

    peers = [PeerDir(net.peer_dir(i)) for i in range(3)]
    for peer in peers:
        # Published to the others: the nginx route, never the CouchDB port itself.
        assert peer.config.couchdb_public_url == (
            f"https://{peer.config.host}:{peer.config.nginx_port}/couchdb")
    # Peer 0's nginx saw the others pull its documents through /couchdb/ ...
    access = (net.peer_dir(0) / "nginx" / "logs" / "access.log").read_text()
    assert "/couchdb/mydrive/_changes" in access
    # ... and the others dialled out through their loopback egress listener.
    egress = (net.peer_dir(2) / "nginx" / "logs" / "access.log").read_text()
    assert f"/remote/{peers[0].config.host}/{peers[0].config.nginx_port}/" in egress
