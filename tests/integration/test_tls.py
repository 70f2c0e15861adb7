"""Issue 4: peers talk only through nginx with mutual TLS (real Debian nginx)."""

from __future__ import annotations

import datetime
import os
import shutil
import socket
import ssl
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from mydrive.crypto.primitives import issue_certificate, new_certificate_authority
from mydrive.errors import PeerUnavailable
from mydrive.node import cluster
from mydrive.node.peerdir import PeerDir
from mydrive.node.pki import load_network, tls_files
from mydrive.runtime.clock import SystemClock
from mydrive.transport.grpc_client import GrpcTransport
from mydrive.transport.signed_fetch import sign_fetch
from tests.strategies import fast_user

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_net(network_factory):
    return network_factory(5, name="tls", tls=True)


def _tls_handshake_and_request(host: str, port: int, context: ssl.SSLContext,
                               source: str | None = None) -> bytes:
    """Open TLS, send a GET, return the reply (raises on handshake/alert failures)."""
    raw = socket.create_connection((host, port), timeout=5,
                                   source_address=(source, 0) if source else None)
    with raw, context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        return tls.recv(4096)


def _client_context(ca_pem: bytes, bundle=None, tmp: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem.decode())
    context.set_alpn_protocols(["http/1.1"])
    if bundle is not None and tmp is not None:
        name = uuid.uuid4().hex
        (tmp / f"{name}.crt").write_bytes(bundle.cert_pem)
        (tmp / f"{name}.key").write_bytes(bundle.key_pem)
        context.load_cert_chain(tmp / f"{name}.crt", tmp / f"{name}.key")
    return context


def test_tls_round_trip_through_nginx(tls_net, tmp_path: Path) -> None:
    """put/get work with TLS on; every peer address in metadata is its nginx; nginx healthy."""
    tls_net.mydrive("user", "create")
    src = tmp_path / "src"
    src.write_bytes(os.urandom(6 * 1024 * 1024))
    tls_net.mydrive("put", str(src), "/tls.bin")
    result = tls_net.json("get", "/tls.bin", "--out", str(tmp_path / "out"))
    assert Path(result["path"]).read_bytes() == src.read_bytes()
    status = tls_net.json("cluster", "status", "--home", str(tls_net.home), user=None)
    assert status["healthy"]
    for peer in status["peers"]:
        assert peer["services"]["nginx"]["healthy"]
    # The access logs prove the chunks crossed nginx.
    logged = "".join((tls_net.peer_dir(i) / "nginx" / "logs" / "access.log").read_text()
                     for i in range(1, 5))
    assert "/mydrive.v1.Receiver/StoreChunk" in logged
    assert "/mydrive.v1.Sender/FetchChunk" in logged


def test_tls_refuses_clients_without_valid_certificate(tls_net, tmp_path: Path) -> None:
    """No certificate, another CA's, or an expired one: refused in the TLS handshake."""
    peer = PeerDir(tls_net.peer_dir(1))
    host, port = peer.config.host, peer.config.nginx_port
    network = load_network(tls_net.home / "pki")
    ca_pem = network.cert_pem

    good = issue_certificate(network, "tester", ip_addresses=["127.0.0.1"])
    reply = _tls_handshake_and_request(host, port, _client_context(ca_pem, good, tmp_path))
    assert reply.startswith(b"HTTP/1.1 200"), reply  # the control: a valid cert gets in

    foreign_ca = new_certificate_authority("someone else")
    foreign = issue_certificate(foreign_ca, "intruder", ip_addresses=["127.0.0.1"])
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=30)
    expired = issue_certificate(network, "old", ip_addresses=["127.0.0.1"],
                                not_before=past - datetime.timedelta(days=1),
                                not_after=past)
    # No certificate: refused by OpenSSL in the handshake (reported at the first read).
    with pytest.raises((ssl.SSLError, ConnectionError)):
        reply = _tls_handshake_and_request(host, port, _client_context(ca_pem, None, tmp_path))
        raise AssertionError(f"no certificate: got a reply {reply[:40]!r}")
    # A foreign or expired certificate: nginx's verify callback defers the verdict to its
    # HTTP layer, which refuses every request on the connection before routing anything
    # (docs/tls.md explains why nginx 1.22 can't fail these in the handshake itself).
    for label, bundle in (("foreign CA", foreign), ("expired", expired)):
        reply = _tls_handshake_and_request(host, port, _client_context(ca_pem, bundle, tmp_path))
        assert reply.startswith(b"HTTP/1.1 400"), (label, reply[:80])
        assert b"SSL certificate error" in reply, (label, reply)

    # And through gRPC: a transport with a foreign certificate is refused as unavailable.
    keys = fast_user()
    transport = GrpcTransport(rpc_timeout_s=5, tls=(ca_pem, foreign.key_pem, foreign.cert_pem))
    signed = sign_fetch(keys.identity, chunk_id=b"\0" * 32, target_peer_id=peer.config.peer_id,
                        segment_indices=[], clock=SystemClock())
    with pytest.raises(PeerUnavailable):
        list(transport.fetch(peer.config.address(), signed))
    transport.close()


def test_tls_ui_only_from_localhost(tls_net) -> None:
    """The UI listener answers 127.0.0.1 but refuses another address (127.0.0.2) with 403."""
    peer = PeerDir(tls_net.peer_dir(0))
    ca_pem = tls_files(peer.tls_dir).ca_cert.read_bytes()
    context = _client_context(ca_pem)
    local = _tls_handshake_and_request(peer.config.host, peer.config.ui_port, context)
    assert not local.startswith(b"HTTP/1.1 403"), local  # allowed (502 until a UI runs)
    remote = _tls_handshake_and_request(peer.config.host, peer.config.ui_port, context,
                                        source="127.0.0.2")
    assert remote.startswith(b"HTTP/1.1 403"), remote


def _netns_available() -> bool:
    return sys.platform == "linux" and os.geteuid() == 0 and shutil.which("ip") is not None


@pytest.mark.skipif(not _netns_available(), reason="needs root and iproute2 (Linux)")
def test_tls_service_ports_unreachable_from_another_host(tmp_path: Path) -> None:
    """From another network namespace only nginx answers; the gRPC service ports do not."""
    suffix = uuid.uuid4().hex[:6]
    ns, host_if, ns_if = f"mdt{suffix}", f"mdh{suffix}", f"mdn{suffix}"
    octet = int(suffix[:2], 16) % 200 + 20
    host_ip, ns_ip = f"10.213.{octet}.1", f"10.213.{octet}.2"

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    ip("netns", "add", ns)
    home = tmp_path / "ns-net"
    try:
        ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        ip("link", "set", ns_if, "netns", ns)
        ip("addr", "add", f"{host_ip}/24", "dev", host_if)
        ip("link", "set", host_if, "up")
        ip("netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/24", "dev", ns_if)
        ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        from mydrive.node.peerdir import init_peer
        from mydrive.node.pki import init_network

        init_network(home / "pki")
        peer = init_peer(home / "peer-0", host=host_ip, network_dir=home / "pki")
        (home / "cluster.json").write_text(
            '{"peers": [{"dir": "%s", "name": "peer-0", "pids": {}}]}' % (home / "peer-0"))
        cluster.start(home)
        cfg = peer.config

        def reachable(port: int) -> bool:
            probe = (f"import socket,sys\ns=socket.socket()\ns.settimeout(3)\n"
                     f"sys.exit(s.connect_ex(('{host_ip}',{port})))")
            result = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", probe],
                                    capture_output=True)
            return result.returncode == 0

        assert reachable(cfg.nginx_port), "nginx must be reachable from the other host"
        for port in (cfg.receiver_port, cfg.sender_port, cfg.receiver_metrics_port,
                     cfg.sender_metrics_port):
            assert not reachable(port), f"service port {port} reachable from another host"
    finally:
        cluster.stop(home)
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
