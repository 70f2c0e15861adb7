"""How the peer's nginx reaches its receiver and sender: a unix socket where there is one.

Behind nginx (TLS on) every byte of a put or get crosses nginx-to-service once more; over a
unix socket that hop skips loopback TCP's stack (docs/benchmarks.md, "Peer-side
optimisations"). Each service then listens on ``PEER_DIR/<kind>.sock`` as well as on its
loopback port (which plain networks, probes and the test-bed use). Loopback TCP stays on
Windows, when the path does not fit a socket address, when nginx's workers (another user
under root) could not reach the socket, and in a container, where nginx is not given the
peer directory.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

MAX_SOCKET_PATH_CHARS = 100  # sockaddr_un holds 108 bytes on Linux, 104 on macOS


def service_socket(peer_root: Path, kind: str) -> Path | None:
    """``PEER_DIR/<kind>.sock`` (absolute) if this system can use it, else None."""
    if os.name != "posix":
        return None
    path = peer_root.resolve() / f"{kind}.sock"
    return path if len(os.fsencode(path)) <= MAX_SOCKET_PATH_CHARS else None


def nginx_upstream(peer_root: Path, kind: str, host: str, port: int, *,
                   container: bool = False) -> str:
    """The address in nginx's ``grpc_pass grpc://...`` for that service."""
    path = None if container else service_socket(peer_root, kind)
    if path is None or not _workers_can_reach(path.parent):
        return f"{host}:{port}"
    return f"unix:{path.as_posix()}"


def open_to_nginx(path: Path) -> None:
    """Let nginx's workers connect to a service socket the service just bound, and no one
    else where that is possible.

    nginx started by another user than root runs its workers as that user, the peer's
    account (the one that runs the services): the socket is 0600. Under root they run as an
    unprivileged user ("nobody" unless nginx was built otherwise), who needs write
    permission on the socket: 0666, so any local process may connect, exactly as to the
    service's loopback port, which it listens on anyway (docs/security.md, "Other accounts
    on a peer's machine").
    """
    os.chmod(path, 0o666 if _workers_are_another_user() else 0o600)  # noqa: S103


def _workers_are_another_user() -> bool:
    """Only root's nginx switches its workers to another user (POSIX only: no sockets on
    Windows)."""
    return os.geteuid() == 0


def _workers_can_reach(directory: Path) -> bool:
    """nginx started by root runs its workers as another user: they must be able to search
    every directory down to the socket (a peer directory made 0700 keeps loopback TCP)."""
    if not _workers_are_another_user():
        return True  # nginx's workers run as this user
    try:
        return all(d.stat().st_mode & stat.S_IXOTH for d in (directory, *directory.parents))
    except OSError:
        return False
