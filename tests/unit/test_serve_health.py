"""A service reports healthy only once its gRPC server has started, and only as itself."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest

from mydrive.node import serve as server_mod
from mydrive.node.peerdir import PeerDir, init_peer


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
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if server_mod.service_healthy(peer.config, "sender"):
                seen.append(started.is_set())
                break
            time.sleep(0.01)
        while server_mod.signal.SIGTERM not in handlers and time.monotonic() < deadline + 10:
            time.sleep(0.01)
        handlers[server_mod.signal.SIGTERM](server_mod.signal.SIGTERM, None)  # type: ignore[operator]

    poller = threading.Thread(target=poll, daemon=True)  # never outlives a failed serve()
    poller.start()
    server_mod.serve("sender", peer.root)
    poller.join()
    assert seen == [True]


def _peer_with_sender_metrics_on(root: Path, port: int) -> PeerDir:
    """A peer whose sender's metrics port is ``port``."""
    return init_peer(root, sender_metrics_port=port)


def _answer_once(listener: socket.socket, reply: bytes) -> threading.Thread:
    def answer() -> None:
        listener.settimeout(10)
        conn, _ = listener.accept()
        with conn:
            conn.recv(1024)
            conn.sendall(reply)

    t = threading.Thread(target=answer, daemon=True)
    t.start()
    return t


def test_service_healthy_treats_a_non_http_answer_as_unhealthy(tmp_path: Path) -> None:
    """A port answered by something that is not our HTTP server is 'not healthy', no crash."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        peer = _peer_with_sender_metrics_on(tmp_path / "p", listener.getsockname()[1])
        t = _answer_once(listener, b"\x00\x00\x12\x04garbage-not-http\r\n\r\n")
        assert server_mod.service_healthy(peer.config, "sender") is False
        t.join()


@pytest.mark.parametrize("body", [b"ok\n", b"ok 0123456789abcdef\n"])
def test_service_healthy_wants_its_own_peer_named(tmp_path: Path, body: bytes) -> None:
    """An HTTP server on the port that answers /healthz 200 but does not name this peer (a
    bare 'ok', another peer's id) is not this peer's service."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        peer = _peer_with_sender_metrics_on(tmp_path / "p", listener.getsockname()[1])
        assert peer.config.peer_id != "0123456789abcdef"
        reply = (b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body)) + body
        t = _answer_once(listener, reply)
        assert server_mod.service_healthy(peer.config, "sender") is False
        t.join()
        own = server_mod.health_body(peer.config.peer_id).encode()
        t = _answer_once(listener, (b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n"
                                    % len(own)) + own)
        assert server_mod.service_healthy(peer.config, "sender") is True
        t.join()
