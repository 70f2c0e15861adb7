"""Where a peer's SFTP server listens, and whether it is the one answering there.

The server (mydrive.sftp) announces ``SSH-2.0-mydrive_<peer id>`` as its SSH banner, so the
health probe tells it from any other SSH server (or program) on the port without logging in.
Nothing is kept: a crash leaves nothing behind.
"""

from __future__ import annotations

import socket

from mydrive.node.peerdir import PeerConfig

DEFAULT_SFTP_HOST = "127.0.0.1"
MAX_BANNER_BYTES = 255  # RFC 4253: the identification line, CR LF included


def software_version(peer_id: str) -> str:
    """The softwareversion part of the server's SSH identification line."""
    return f"mydrive_{peer_id}"


def sftp_host(config: PeerConfig) -> str:
    return config.sftp_host or DEFAULT_SFTP_HOST


def sftp_port(config: PeerConfig) -> int:
    """0 when the peer has no SFTP server (a peer directory made before it)."""
    return config.sftp_port


def sftp_address(config: PeerConfig) -> str:
    return f"sftp://{sftp_host(config)}:{sftp_port(config)}"


def sftp_healthy(config: PeerConfig, *, timeout_s: float = 1.0) -> bool:
    """The peer's SFTP server answers on its port with its own banner."""
    port = sftp_port(config)
    if not port:
        return False
    host = sftp_host(config)
    probe_host = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104
    try:
        with socket.create_connection((probe_host, port), timeout=timeout_s) as sock:
            sock.settimeout(timeout_s)
            banner = b""
            while b"\n" not in banner and len(banner) < MAX_BANNER_BYTES:
                data = sock.recv(MAX_BANNER_BYTES - len(banner))
                if not data:
                    break
                banner += data
    except OSError:
        return False
    line = banner.split(b"\n", 1)[0].rstrip(b"\r")
    return line == f"SSH-2.0-{software_version(config.peer_id)}".encode()
