"""nginx reaches a TLS peer's services over unix sockets where it can (loopback TCP else)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import grpc
import pytest

from mydrive.node.peerdir import init_peer
from mydrive.node.pki import init_network
from mydrive.node.serve import build_server
from mydrive.node.service_socket import MAX_SOCKET_PATH_CHARS, nginx_upstream, service_socket
from mydrive.runtime.metrics import Metrics
from mydrive.transport.wire import mydrive_pb2 as pb
from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc

posix_only = pytest.mark.skipif(os.name != "posix", reason="unix sockets: loopback TCP there")


@posix_only
def test_tls_peer_service_answers_on_its_socket(tmp_path: Path) -> None:
    """The sender of a TLS peer serves on PEER_DIR/sender.sock, where nginx is pointed."""
    init_network(tmp_path / "pki")
    peer = init_peer(tmp_path / "p", network_dir=tmp_path / "pki")
    assert peer.config.tls
    server, _ = build_server("sender", peer, Metrics())
    server.start()
    try:
        sock = service_socket(peer.root, "sender")
        assert sock == peer.root.resolve() / "sender.sock"
        # nginx's workers may be another user (root starts them as "nobody"): they connect;
        # else they are this user, and no other may.
        assert sock.stat().st_mode & 0o777 == (0o666 if os.geteuid() == 0 else 0o600)
        with grpc.insecure_channel(f"unix:{sock}") as channel:
            stub = pb_grpc.SenderStub(channel)
            with pytest.raises(grpc.RpcError) as err:  # a malformed request: but an answer
                list(stub.FetchChunk(pb.SignedFetch(request=b"junk", signature=b""),
                                     timeout=10))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        server.stop(0)


def test_plain_peer_has_no_socket(tmp_path: Path) -> None:
    """Without TLS there is no nginx: the services keep their loopback ports only."""
    peer = init_peer(tmp_path / "p")
    server, _ = build_server("sender", peer, Metrics())
    try:
        assert not (peer.root / "sender.sock").exists()
    finally:
        server.stop(0)


def test_loopback_tcp_when_no_socket_fits(tmp_path: Path) -> None:
    """A path too long for sockaddr_un, or nginx in a container: loopback TCP."""
    deep = tmp_path / ("d" * MAX_SOCKET_PATH_CHARS)
    assert service_socket(deep, "receiver") is None
    assert nginx_upstream(deep, "receiver", "127.0.0.1", 7001) == "127.0.0.1:7001"
    assert nginx_upstream(tmp_path, "receiver", "127.0.0.1", 7001,
                          container=True) == "127.0.0.1:7001"


@posix_only
@pytest.mark.skipif(os.name == "posix" and os.geteuid() != 0,
                    reason="only root's nginx runs its workers as another user")
def test_root_keeps_tcp_when_workers_cannot_reach_the_socket() -> None:
    """Under root nginx's workers run as "nobody": a peer directory they can't search
    (0700) keeps loopback TCP instead of a socket they could not open."""
    outside = Path(tempfile.mkdtemp(prefix="svc-sock-"))  # pytest's own tmp is 0700
    try:
        peer_root = outside / "p"
        peer_root.mkdir(mode=0o700)
        assert nginx_upstream(peer_root, "sender", "127.0.0.1", 7002) == "127.0.0.1:7002"
        peer_root.chmod(0o755)
        outside.chmod(0o755)
        assert nginx_upstream(peer_root, "sender", "127.0.0.1",
                              7002) == f"unix:{peer_root.resolve()}/sender.sock"
    finally:
        shutil.rmtree(outside)


@posix_only
def test_service_starts_on_its_port_when_the_socket_cannot_be_bound(tmp_path: Path) -> None:
    """A socket path that can't be bound (here a regular file squats it; in a container, a
    volume without sockets) costs the socket, not the service: it serves on its port."""
    init_network(tmp_path / "pki")
    peer = init_peer(tmp_path / "p", network_dir=tmp_path / "pki")
    (peer.root / "sender.sock").write_text("not a socket")
    server, address = build_server("sender", peer, Metrics())
    server.start()
    try:
        with grpc.insecure_channel(address) as channel:
            with pytest.raises(grpc.RpcError) as err:
                list(pb_grpc.SenderStub(channel).FetchChunk(
                    pb.SignedFetch(request=b"junk", signature=b""), timeout=10))
            assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    finally:
        server.stop(0)


@posix_only
def test_socket_is_the_peer_accounts_only_when_nginx_is_not_root(tmp_path: Path,
                                                                  monkeypatch) -> None:
    """nginx started by the peer's own account runs its workers as that account: no other
    local user may connect to the service socket (0600). Under root the workers are another
    user ("nobody"), who must connect: 0666 (docs/security.md)."""
    import socket

    from mydrive.node import service_socket as module

    path = tmp_path / "sender.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as bound:
        bound.bind(str(path))
        monkeypatch.setattr(module.os, "geteuid", lambda: 1000)
        module.open_to_nginx(path)
        assert path.stat().st_mode & 0o777 == 0o600
        monkeypatch.setattr(module.os, "geteuid", lambda: 0)
        module.open_to_nginx(path)
        assert path.stat().st_mode & 0o777 == 0o666
