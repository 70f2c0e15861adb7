"""Run the UI of one peer on loopback: gunicorn (Linux, containers) or waitress (anywhere).

Both run the app in ONE process (gunicorn: one worker with threads), because logged-in users'
keys live in that process's memory. The server listens on 127.0.0.1 only, whatever the peer's
host: from elsewhere the UI is reached through the peer's nginx (TLS, localhost only).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from mydrive.errors import BadRequest
from mydrive.node.peerdir import PeerDir
from mydrive.node.ui_address import LOOPBACK

SERVERS = ("auto", "gunicorn", "waitress")
THREADS = 8
log = logging.getLogger("mydrive.ui")


def pick_server(requested: str) -> str:
    """``auto``: gunicorn where it runs (POSIX, installed), else waitress (e.g. Windows)."""
    if requested not in SERVERS:
        raise BadRequest(f"unknown UI server {requested!r}; expected one of {', '.join(SERVERS)}")
    if requested != "auto":
        return requested
    if os.name == "posix":
        try:
            import gunicorn  # type: ignore[import-untyped]  # noqa: F401
        except ImportError:
            return "waitress"
        return "gunicorn"
    return "waitress"


def run(peer_dir: Path, *, server: str = "auto") -> None:
    peer = PeerDir(peer_dir)
    port = peer.config.ui_backend_port
    if not port:
        raise BadRequest(f"peer {peer.config.name} has no ui_backend_port in its peer.json")
    chosen = pick_server(server)
    from mydrive.ui.app import create_app
    from mydrive.ui.settings import UiSettings

    settings = UiSettings(secure_cookies=peer.config.tls)
    log.info("UI of peer %s on http://%s:%d/ (%s)", peer.config.name, LOOPBACK, port, chosen)
    if chosen == "waitress":
        _waitress(create_app(peer_dir, settings=settings), port, settings)
    else:
        _gunicorn(peer_dir, port, settings)


def _waitress(app: Any, port: int, settings: Any) -> None:
    import waitress  # type: ignore[import-untyped]

    from mydrive.ui.uploads import DeadlineInput

    waitress.serve(DeadlineInput(app, settings.upload_timeout_s), host=LOOPBACK, port=port,
                   threads=THREADS, ident="mydrive",
                   max_request_body_size=settings.max_upload_bytes + 2 * 1024 * 1024,
                   channel_timeout=120, connection_limit=100)


def _gunicorn(peer_dir: Path, port: int, settings: Any) -> None:
    from gunicorn.app.base import BaseApplication  # type: ignore[import-untyped]

    from mydrive.ui.uploads import DeadlineInput

    class Ui(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in {
                "bind": f"{LOOPBACK}:{port}",
                "workers": 1,             # ONE process: sessions hold keys in its memory
                "worker_class": "gthread",
                "threads": THREADS,
                "timeout": 120,           # heartbeat of the worker, not a request limit
                "graceful_timeout": 10,
                "accesslog": None,        # no request lines in logs
                "errorlog": "-",
                "proc_name": "mydrive-ui",
                "preload_app": False,     # build the app (and its keys) in the worker
            }.items():
                self.cfg.set(key, value)
            if "control_socket_disable" in self.cfg.settings:
                # gunicorn >= 25 opens a control socket at one path per user ($HOME/.gunicorn):
                # every peer's UI would fight over it.
                self.cfg.set("control_socket_disable", True)

        def load(self) -> Any:
            from mydrive.ui.app import create_app

            return DeadlineInput(create_app(peer_dir, settings=settings),
                                 settings.upload_timeout_s)

    Ui().run()
