"""A TCP forwarder on a free loopback port that a test can close (a partition) and reopen.

Kernel netem is not available here; cutting every connection through the gate and refusing
new ones is what a partition looks like to the processes on both sides.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from mydrive.node.peerdir import free_port

MAX_CONNECTIONS = 256


class TcpGate:
    def __init__(self, target_port: int, host: str = "127.0.0.1", *,
                 source: str | None = None) -> None:
        """``source``: the loopback address the gate dials from (the target sees it as the
        caller's address, e.g. 127.0.0.2 for a second peer on one machine)."""
        self.host, self.target_port, self.source = host, target_port, source
        self.port = free_port(host)
        self._open = threading.Event()
        self._open.set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._socks: set[socket.socket] = set()
        self._listener = socket.create_server((host, self.port))
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept, daemon=True, name="tcpgate")
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def close_gate(self) -> None:
        """Cut every connection through the gate and refuse new ones."""
        self._open.clear()
        with self._lock:
            for s in list(self._socks):
                self._shut(s)
            self._socks.clear()

    def open_gate(self) -> None:
        self._open.set()

    def stop(self) -> None:
        self._stop.set()
        self.close_gate()
        self._thread.join(timeout=5)
        self._listener.close()

    @staticmethod
    def _shut(s: socket.socket) -> None:
        with contextlib.suppress(OSError):
            s.shutdown(socket.SHUT_RDWR)
        s.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                if not self._open.is_set() or len(self._socks) >= 2 * MAX_CONNECTIONS:
                    self._shut(client)
                    continue
                try:
                    upstream = socket.create_connection(
                        (self.host, self.target_port), timeout=5,
                        source_address=(self.source, 0) if self.source else None)
                except OSError:
                    self._shut(client)
                    continue
                upstream.settimeout(None)
                self._socks.update((client, upstream))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                for s in (src, dst):
                    if s in self._socks:
                        self._socks.discard(s)
                        self._shut(s)
