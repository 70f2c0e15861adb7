"""A service reports healthy only once its gRPC server has started."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import pytest

from mydrive.node import serve as server_mod
from mydrive.node.peerdir import init_peer


def test_serve_healthz_answers_only_after_grpc_started(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """/healthz never says ok while the gRPC server is still starting (a restart race that
    the chaos rolling-restart scenario hit: 'healthy' peers refusing calls)."""
    peer = init_peer(tmp_path / "p")
    started = threading.Event()

    class SlowServer:
        def start(self) -> None:
            time.sleep(0.5)
            started.set()

        def stop(self, grace: float) -> threading.Event:
            done = threading.Event()
            done.set()
            return done

    handlers: dict[int, object] = {}
    monkeypatch.setattr(server_mod, "build_server",
                        lambda kind, p, metrics, **kw: (SlowServer(), "unused"))
    monkeypatch.setattr(server_mod.signal, "signal",
                        lambda signum, handler: handlers.__setitem__(signum, handler))
    seen: list[bool] = []

    def poll() -> None:
        url = f"http://{peer.config.service_host}:{peer.config.sender_metrics_port}/healthz"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(url, timeout=1) as r:
                    if r.status == 200:
                        seen.append(started.is_set())
                        break
            except OSError:
                time.sleep(0.01)
        while server_mod.signal.SIGTERM not in handlers and time.monotonic() < deadline + 10:
            time.sleep(0.01)
        handlers[server_mod.signal.SIGTERM](server_mod.signal.SIGTERM, None)  # type: ignore[operator]

    poller = threading.Thread(target=poll, daemon=True)  # never outlives a failed serve()
    poller.start()
    server_mod.serve("sender", peer.root)
    poller.join()
    assert seen == [True]


def test_cluster_healthz_treats_a_non_http_answer_as_unhealthy() -> None:
    """A port answered by something that is not our HTTP server is 'not healthy', no crash."""
    import socket

    from mydrive.node import cluster

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]

        def answer_garbage() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"\x00\x00\x12\x04garbage-not-http\r\n\r\n")

        t = threading.Thread(target=answer_garbage)
        t.start()
        assert cluster.service_healthy("127.0.0.1", port) is False
        t.join()
