"""Where a peer's UI is reached from a browser on the same machine."""

from __future__ import annotations

from ..peerdir import PeerConfig

LOOPBACK = "127.0.0.1"


def ui_url(config: PeerConfig) -> str:
    """https through the peer's nginx when TLS is on, else the UI's own loopback server."""
    if config.tls:
        return f"https://{LOOPBACK}:{config.ui_port}/"
    return f"http://{LOOPBACK}:{config.ui_backend_port}/"


def backend_health_url(config: PeerConfig) -> str:
    return f"http://{LOOPBACK}:{config.ui_backend_port}/healthz"
