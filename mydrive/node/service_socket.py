"""How the peer's nginx reaches its receiver and sender, and who else can.

Behind nginx (TLS on) every byte of a put or get crosses nginx-to-service once more; over a
unix socket that hop skips loopback TCP's stack (docs/benchmarks.md, "Peer-side
optimisations"). It is also the only way in: a TLS peer's service listens on a unix socket
**instead of** its loopback port, and only nginx's workers may open it:

* a peer of an unprivileged account: ``PEER_DIR/<kind>.sock``, 0600, the peer's account's
  (the owner of ``peer.json``), and nginx's workers run as that account: an nginx started
  by it does so anyway; under root, the rendered config names it in nginx's ``user``
  directive (``nginx_worker_user``);
* a peer of root's: its workers must not be root, so they run as an account of their own
  (``mydrive.node.nginx_workers``), and the socket is
  ``/run/mydrive/<hash of PEER_DIR>/<kind>.sock``, root's, group that account's, 0660, in a
  directory only root and that group may pass (root's ``PEER_DIR`` is often in one the
  workers could not search).

Any other local account gets EACCES on the socket and a refused connection on the port,
where before it could call the services without a certificate and forge the
caller-certificate header nginx sets (docs/security.md, "Other accounts on a peer's
machine").

Loopback TCP stays (``service_listen``) without TLS (no nginx: the test-bed's plain
networks), on Windows (no unix sockets), when the path does not fit a socket address, and
in a container pod, whose nginx is rendered with ``--container`` (its record
``PEER_DIR/nginx/upstream.json`` tells the services): the pod's network namespace is its
own, so its loopback is the pod's processes' only.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mydrive.errors import BadRequest
from mydrive.runtime.disk import atomic_write_bytes

if TYPE_CHECKING:
    from mydrive.node.peerdir import PeerConfig

MAX_SOCKET_PATH_CHARS = 100  # sockaddr_un holds 108 bytes on Linux, 104 on macOS
SOCKET_MODE = 0o600
ROOT_PEER_SOCKET_MODE = 0o660  # root's, group nginx's workers' (nginx_workers)
# Written by a --container render (nginx reaches the services over the pod's loopback),
# removed by any other render.
UPSTREAM_RECORD = Path("nginx") / "upstream.json"
PEER_CONFIG_NAME = "peer.json"  # mydrive.node.peerdir.CONFIG_NAME (no import cycle)


def service_socket(peer_root: Path, kind: str) -> Path | None:
    """The service's socket (absolute) if this system can use one, else None:
    ``PEER_DIR/<kind>.sock``, or for a peer of root's its runtime directory's."""
    if os.name != "posix":
        return None
    if root_peer(peer_root):
        from mydrive.node.nginx_workers import runtime_dir

        return runtime_dir(peer_root) / f"{kind}.sock"
    path = peer_root.resolve() / f"{kind}.sock"
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH_CHARS else None


@dataclass(frozen=True)
class ServiceListen:
    """Where one service listens for gRPC: exactly one of the two."""

    tcp: str | None        # host:port
    socket: Path | None    # PEER_DIR/<kind>.sock

    @property
    def address(self) -> str:
        return f"unix:{self.socket}" if self.socket is not None else str(self.tcp)


def service_listen(peer_root: Path, config: PeerConfig, kind: str) -> ServiceListen:
    """Where the ``kind`` service of this peer listens (and so where nginx must point)."""
    tcp = config.receiver_address if kind == "receiver" else config.sender_address
    if not config.tls or nginx_on_loopback(peer_root):
        return ServiceListen(tcp=tcp, socket=None)
    sock = service_socket(peer_root, kind)
    return ServiceListen(tcp=tcp if sock is None else None, socket=sock)


def nginx_upstream(peer_root: Path, kind: str, host: str, port: int, *,
                   container: bool = False) -> str:
    """The address in nginx's ``grpc_pass grpc://...`` for that service."""
    path = None if container else service_socket(peer_root, kind)
    return f"{host}:{port}" if path is None else f"unix:{path.as_posix()}"


def record_nginx_upstream(peer_root: Path, *, container: bool) -> None:
    """What a render tells the services: a container's nginx dials their loopback ports
    (the record), any other nginx their sockets (no record)."""
    record = peer_root / UPSTREAM_RECORD
    if container:
        atomic_write_bytes(record, json.dumps({"services": "loopback"}).encode())
    else:
        record.unlink(missing_ok=True)


def nginx_on_loopback(peer_root: Path) -> bool:
    return (peer_root / UPSTREAM_RECORD).is_file()


def peer_account(peer_root: Path) -> tuple[int, int]:
    """(uid, gid) of the peer's account: the owner of its ``peer.json`` (0600, so its
    services run as that account, or as root)."""
    st = (peer_root / PEER_CONFIG_NAME).stat()
    return st.st_uid, st.st_gid


def root_peer(peer_root: Path) -> bool:
    """The peer's account is root (POSIX; False for a directory without ``peer.json``)."""
    try:
        return os.name == "posix" and peer_account(peer_root)[0] == 0
    except FileNotFoundError:
        return False


def release_sockets(peer_root: Path) -> None:
    """After the peer's services and nginx have stopped: a peer of root's removes its runtime
    directory (its sockets, nginx's temp files); elsewhere the sockets stay in ``PEER_DIR``,
    and the next bind replaces them."""
    if root_peer(peer_root):
        from mydrive.node.nginx_workers import release_runtime_dir

        release_runtime_dir(peer_root)


def bind_private_socket(add_port: object, path: Path, peer_root: Path) -> None:
    """Bind ``path`` with ``add_port`` (``grpc.Server.add_insecure_port``) so that only
    nginx's workers may connect: created under umask 077 (never connectable by others, not
    even between bind and chmod), then 0600 and, when root runs the service for another
    account, handed to that account (nginx's workers run as it); a peer of root's: in its
    runtime directory, 0660 for the group of its workers' own account."""
    group = None
    if root_peer(peer_root):
        from mydrive.node.nginx_workers import prepare_runtime_dir, worker_account

        account = worker_account()
        prepare_runtime_dir(peer_root, account)
        group = account.gid
    old = os.umask(0o077)
    try:
        add_port(f"unix:{path}")  # type: ignore[operator]
    finally:
        os.umask(old)
    if group is not None:
        os.chown(path, 0, group)
        os.chmod(path, ROOT_PEER_SOCKET_MODE)
    else:
        os.chmod(path, SOCKET_MODE)
        uid, gid = peer_account(peer_root)
        if os.geteuid() == 0 and (uid, gid) != (0, 0):
            os.chown(path, uid, gid)
    st = os.stat(path)
    if (not stat.S_ISSOCK(st.st_mode) or st.st_mode & 0o007
            or (st.st_mode & 0o070 and st.st_gid != group)):
        raise BadRequest(f"{path} is not a private socket after binding it")


def nginx_worker_user(peer_root: Path) -> str:
    """nginx's main-context ``user`` line for this peer's config.

    Only root's nginx switches its workers to another account ("nobody" unless told): for
    a peer of another account it is told that account, the only one (with root) that may
    open the 0600 service sockets; for a peer of root's, its workers' own account (never
    root itself, nor "nobody": mydrive.node.nginx_workers). An nginx started by another
    account runs its workers as itself, which must then be the peer's (a comment instead:
    nginx would warn about the directive)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return ("# workers run as the account that starts nginx: the peer's own, which "
                "alone may open the service sockets")
    import grp
    import pwd

    if root_peer(peer_root):
        from mydrive.node.nginx_workers import worker_account

        return (f"{worker_account().user_directive}  # the peer is root's: its workers' own "
                f"account, which alone (with root) may open the service sockets")
    uid, gid = peer_account(peer_root)
    try:
        user, group = pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name
    except KeyError as exc:
        raise BadRequest(f"{peer_root / PEER_CONFIG_NAME} belongs to uid {uid} gid {gid}, "
                         f"which have no names here: nginx's 'user' directive needs a "
                         f"user and group name (create them, or start nginx as that "
                         f"account)") from exc
    return (f"user {user} {group};  # the peer's account: only it may open the service "
            f"sockets")
