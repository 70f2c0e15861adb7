"""The Toxiproxy client's timeouts, against a stand-in HTTP server (no Toxiproxy needed)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chaos.toxiproxy import ToxiproxyClient, ToxiproxyError

SLOW_S = 0.6


class SlowHandler(BaseHTTPRequestHandler):
    """Answers every request after SLOW_S, like Toxiproxy draining stuck links on /reset."""

    def _answer(self) -> None:
        time.sleep(SLOW_S)
        self.send_response(204)
        self.end_headers()

    do_POST = do_DELETE = do_GET = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def slow_api() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_toxiproxy_reset_waits_longer_than_ordinary_calls(slow_api: str) -> None:
    """/reset and toxic removal get the long timeout (Toxiproxy can take 5 s per stuck link
    to remove a toxic); other calls keep the short one."""
    client = ToxiproxyClient(slow_api, timeout_s=0.2, remove_timeout_s=5.0)
    client.reset()
    client.remove_toxic("p", "t")
    with pytest.raises(ToxiproxyError, match="timed out"):
        client.set_enabled("p", False)
