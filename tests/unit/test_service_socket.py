"""nginx reaches a TLS peer's services over unix sockets where it can (loopback TCP else),
and no other local account reaches them at all (docs/security.md, "Other accounts on a
peer's machine"; the attack on a running network: tests/integration/test_local_accounts.py)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import grpc
import pytest

from mydrive.errors import BadRequest
from mydrive.node import service_socket as module
from mydrive.node.nginx import render
from mydrive.node.peerdir import init_peer
from mydrive.node.pki import init_network
from mydrive.node.serve import build_server
from mydrive.node.service_socket import (
    MAX_SOCKET_PATH_CHARS,
    nginx_upstream,
    nginx_worker_user,
    service_listen,
    service_socket,
)
from mydrive.runtime.metrics import Metrics
from mydrive.transport.wire import mydrive_pb2 as pb
from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc

posix_only = pytest.mark.skipif(os.name != "posix", reason="unix sockets: loopback TCP there")
as_root = pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0,
                             reason="only root runs a peer of root's or another account's")
OTHER_ACCOUNT = 65534  # the account root runs a peer for, in the tests that need one


def _tls_peer(tmp_path: Path):  # type: ignore[no-untyped-def]
    init_network(tmp_path / "pki")
    return init_peer(tmp_path / "p", network_dir=tmp_path / "pki")


def _unprivileged_peer(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A TLS peer of an unprivileged account: the tests' own, or under root another one's
    (root then runs its services for it, as ``sudo`` would)."""
    peer = _tls_peer(tmp_path)
    if os.geteuid() != 0:
        return peer
    os.chown(peer.root / "peer.json", OTHER_ACCOUNT, OTHER_ACCOUNT)
    return peer


def _peer_of(owner: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    if owner == "root":
        if os.geteuid() != 0:
            pytest.skip("only root runs a peer of root's")
        peer = _tls_peer(tmp_path)
        assert module.root_peer(peer.root)
        return peer
    return _unprivileged_peer(tmp_path)


PEER_OWNERS = pytest.mark.parametrize("owner", ["unprivileged", "root"])


def _refused(address: str) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except ConnectionRefusedError:
        return True
    return False


def _answers(target: str) -> None:
    """A malformed FetchChunk gets an answer (INVALID_ARGUMENT) from the sender there."""
    with grpc.insecure_channel(target) as channel:
        with pytest.raises(grpc.RpcError) as err:
            list(pb_grpc.SenderStub(channel).FetchChunk(
                pb.SignedFetch(request=b"junk", signature=b""), timeout=10))
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@posix_only
def test_tls_peer_service_answers_on_its_socket_only(tmp_path: Path) -> None:
    """The sender of a TLS peer of an unprivileged account serves on PEER_DIR/sender.sock,
    where nginx is pointed, a 0600 socket of the peer's account, and not on its loopback
    port (open to every local account): before, it listened on both and the socket was 0666
    under root."""
    peer = _unprivileged_peer(tmp_path)
    assert peer.config.tls
    server, address = build_server("sender", peer, Metrics())
    server.start()
    try:
        sock = service_socket(peer.root, "sender")
        assert sock == peer.root.resolve() / "sender.sock"
        assert address == f"unix:{sock}"
        st = sock.stat()
        assert st.st_mode & 0o777 == 0o600
        assert (st.st_uid, st.st_gid) == module.peer_account(peer.root)
        _answers(f"unix:{sock}")
        assert _refused(peer.config.sender_address)
    finally:
        server.stop(0)


def test_plain_peer_has_no_socket(tmp_path: Path) -> None:
    """Without TLS there is no nginx: the services keep their loopback ports only."""
    peer = init_peer(tmp_path / "p")
    server, address = build_server("sender", peer, Metrics())
    server.start()
    try:
        assert not (peer.root / "sender.sock").exists()
        assert address == peer.config.sender_address
        _answers(address)
    finally:
        server.stop(0)


def test_loopback_tcp_when_no_socket_fits(tmp_path: Path) -> None:
    """A path too long for sockaddr_un, or nginx in a container: loopback TCP."""
    deep = tmp_path / ("d" * MAX_SOCKET_PATH_CHARS)
    assert service_socket(deep, "receiver") is None
    assert nginx_upstream(deep, "receiver", "127.0.0.1", 7001) == "127.0.0.1:7001"
    assert nginx_upstream(tmp_path, "receiver", "127.0.0.1", 7001,
                          container=True) == "127.0.0.1:7001"


@as_root
def test_root_peer_socket_is_for_its_nginx_workers_only(tmp_path: Path) -> None:
    """A peer of root's (its nginx's workers must not be root) serves on a socket in its
    runtime directory: root's, group the workers' own account's, 0660, in a directory
    (0750) only root and that group may pass, in a base others may pass but not list (0711);
    not in PEER_DIR, which the workers may not be able to search, nor on its loopback port.
    Before, the socket was PEER_DIR/sender.sock, 0600 root's, for root's workers."""
    from mydrive.node.nginx_workers import RUNTIME_BASE, runtime_dir, worker_account

    peer = _peer_of("root", tmp_path)
    workers = worker_account()
    server, address = build_server("sender", peer, Metrics())
    server.start()
    try:
        sock = service_socket(peer.root, "sender")
        assert sock == runtime_dir(peer.root) / "sender.sock"
        assert address == f"unix:{sock}" and not (peer.root / "sender.sock").exists()
        modes = {path: (path.stat().st_uid, path.stat().st_gid, path.stat().st_mode & 0o777)
                 for path in (sock, sock.parent, RUNTIME_BASE)}
        assert modes == {sock: (0, workers.gid, 0o660), sock.parent: (0, workers.gid, 0o750),
                         RUNTIME_BASE: (0, 0, 0o711)}
        _answers(address)
        assert _refused(peer.config.sender_address)
    finally:
        server.stop(0)


@posix_only
def test_container_render_keeps_the_services_on_loopback(tmp_path: Path) -> None:
    """A --container render points nginx at the pod's loopback ports and records it, so the
    services listen there (the pod's own network namespace); a render for this machine
    points it at the sockets and the services follow."""
    peer = _tls_peer(tmp_path)
    sock = service_socket(peer.root, "sender")
    render(peer, container=True)
    conf = (peer.root / "nginx" / "nginx.conf").read_text()
    assert f"grpc_pass grpc://{peer.config.sender_address};" in conf
    listen = service_listen(peer.root, peer.config, "sender")
    assert (listen.tcp, listen.socket) == (peer.config.sender_address, None)
    server, address = build_server("sender", peer, Metrics())
    server.start()
    try:
        assert address == peer.config.sender_address and not sock.exists()
        _answers(address)
    finally:
        server.stop(0)
    render(peer)
    conf = (peer.root / "nginx" / "nginx.conf").read_text()
    assert f"grpc_pass grpc://unix:{sock};" in conf
    assert service_listen(peer.root, peer.config, "sender").socket == sock


@posix_only
@PEER_OWNERS
def test_service_refuses_to_start_when_the_socket_cannot_be_bound(tmp_path: Path,
                                                                  owner: str) -> None:
    """A socket path that can't be bound (here a regular file squats it; a file system
    without sockets) stops the service with the reason: it does not fall back to its
    loopback port, which nginx (pointed at the socket) would not use and every other local
    account could."""
    peer = _peer_of(owner, tmp_path)
    squat = service_socket(peer.root, "sender")
    assert squat is not None
    if owner == "root":
        from mydrive.node.nginx_workers import prepare_runtime_dir, worker_account

        prepare_runtime_dir(peer.root, worker_account())
    squat.write_text("not a socket")
    with pytest.raises(BadRequest, match="can't listen on its unix socket"):
        build_server("sender", peer, Metrics())
    assert _refused(peer.config.sender_address)


@posix_only
@PEER_OWNERS
def test_a_socket_left_by_a_crash_is_bound_again(tmp_path: Path, owner: str) -> None:
    """A service killed hard leaves its socket file behind: the next start binds anew."""
    peer = _peer_of(owner, tmp_path)
    sock = service_socket(peer.root, "sender")
    assert sock is not None
    if owner == "root":
        from mydrive.node.nginx_workers import prepare_runtime_dir, worker_account

        prepare_runtime_dir(peer.root, worker_account())
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as leftover:
        leftover.bind(str(sock))
    os.chmod(sock, 0o666)
    server, address = build_server("sender", peer, Metrics())
    server.start()
    try:
        assert sock.stat().st_mode & 0o777 == (0o660 if owner == "root" else 0o600)
        _answers(address)
    finally:
        server.stop(0)


@as_root
def test_root_hands_the_socket_to_the_peer_account(tmp_path: Path) -> None:
    """Root running the services of a peer another account owns (peer.json's owner): the
    socket is that account's, 0600, and root's nginx runs its workers as it."""
    import grp
    import pwd

    peer = _tls_peer(tmp_path)
    os.chown(peer.root / "peer.json", 65534, 65534)
    server, _ = build_server("sender", peer, Metrics())
    try:
        st = (peer.root / "sender.sock").stat()
        assert (st.st_uid, st.st_gid, st.st_mode & 0o777) == (65534, 65534, 0o600)
    finally:
        server.stop(0)
    user, group = pwd.getpwuid(65534).pw_name, grp.getgrgid(65534).gr_name
    assert nginx_worker_user(peer.root).startswith(f"user {user} {group};")


@posix_only
def test_nginx_workers_run_as_the_peer_account(tmp_path: Path, monkeypatch) -> None:
    """For a peer of an unprivileged account root's nginx is told that account (``user``);
    any other account's nginx runs its workers as itself, so the config says nothing nginx
    would warn about."""
    peer = _unprivileged_peer(tmp_path)
    uid, gid = module.peer_account(peer.root)
    monkeypatch.setattr(module.os, "geteuid", lambda: 0)  # root's nginx, whoever runs this
    import grp
    import pwd

    line = nginx_worker_user(peer.root)
    assert line.startswith(f"user {pwd.getpwuid(uid).pw_name} {grp.getgrgid(gid).gr_name};")
    render(peer)
    assert line in (peer.root / "nginx" / "nginx.conf").read_text()
    monkeypatch.setattr(module.os, "geteuid", lambda: 4321)
    assert nginx_worker_user(peer.root).startswith("#")


@posix_only
def test_container_render_leaves_nginx_workers_unprivileged(tmp_path: Path,
                                                             monkeypatch) -> None:
    """In a pod the services are on loopback, so no socket needs a worker account: the
    render names no worker user (nginx's unprivileged default) even when root renders it
    for a root-owned peer, and its temp files stay in PEER_DIR/nginx/tmp (2c6653a had the
    workers run as root there)."""
    peer = _tls_peer(tmp_path)
    monkeypatch.setattr(module.os, "geteuid", lambda: 0)
    monkeypatch.setattr(module, "peer_account", lambda root: (0, 0))
    render(peer, container=True)
    conf = (peer.root / "nginx" / "nginx.conf").read_text()
    assert not any(line.strip().startswith("user ") for line in conf.splitlines())
    assert f"client_body_temp_path {(peer.root / 'nginx' / 'tmp').resolve()}/body;" in conf


@as_root
def test_root_peer_nginx_render_names_the_workers_own_account(tmp_path: Path) -> None:
    """Root's render for a peer of root's: ``user <workers' account>``, never root, and the
    workers' temp files and the upstream sockets in the peer's runtime directory, which
    that account may pass (PEER_DIR, here in pytest's 0700 directory, it may not). Before,
    the line was ``user root root;``."""
    from mydrive.node.nginx_workers import runtime_dir, worker_account

    peer = _peer_of("root", tmp_path)
    workers = worker_account()
    render(peer)
    conf = (peer.root / "nginx" / "nginx.conf").read_text()
    users = [line.split("#")[0].strip() for line in conf.splitlines()
             if line.strip().startswith("user ")]
    assert users == [f"user {workers.name} {workers.group};"]
    assert workers.uid != 0 and workers.gid != 0
    run = runtime_dir(peer.root)
    assert f"client_body_temp_path {run}/tmp/body;" in conf
    assert (run / "tmp").stat().st_uid == workers.uid
    for kind in ("receiver", "sender"):
        assert f"grpc_pass grpc://unix:{run}/{kind}.sock;" in conf
