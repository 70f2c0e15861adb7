"""Where a peer's UI is reached from a browser on the same machine."""

from __future__ import annotations

import http.client
import urllib.request

from mydrive.node.peerdir import PeerConfig

LOOPBACK = "127.0.0.1"


def ui_url(config: PeerConfig) -> str:
    """https through the peer's nginx when TLS is on, else the UI's own loopback server."""
    if config.tls:
        return f"https://{LOOPBACK}:{config.ui_port}/"
    return f"http://{LOOPBACK}:{config.ui_backend_port}/"


def backend_health_url(config: PeerConfig) -> str:
    return f"http://{LOOPBACK}:{config.ui_backend_port}/healthz"


def health_body(peer_id: str) -> str:
    """What /healthz answers: naming the peer, so another process on the port won't pass."""
    return f"ok {peer_id}\n"


def ui_healthy(config: PeerConfig, *, timeout_s: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(backend_health_url(config), timeout=timeout_s) as r:  # noqa: S310
            return bool(r.status == 200) and r.read(256).decode() == health_body(config.peer_id)
    except (OSError, UnicodeDecodeError, http.client.HTTPException):
        # Another program on the port may answer anything, or not HTTP at all.
        return False
