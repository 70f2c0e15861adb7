"""A small typed client for the Toxiproxy 2.12 REST API, and the server process it talks to.

Why not ``toxiproxy-python`` (PyPI, 0.1.1 from 2019): its wheel imports modules it does not
ship (``toxiproxy.server``, ``toxiproxy.toxic``), so ``import toxiproxy`` fails, and it needs
``future``/``requests`` and keeps the API address in class attributes. This client uses the
standard library only (urllib) and covers what the harness needs: proxies (create, enable,
disable, delete), toxics (add, remove) and reset. See docs/chaos.md.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mydrive.node.peerdir import free_port

ROOT = Path(__file__).resolve().parent.parent
BINARY_ENV = "MYDRIVE_TOXIPROXY_SERVER"
INSTALL_HINT = ("Toxiproxy 2.12 server not found: run scripts/install-toxiproxy.sh (or "
                "scripts/setup.sh), or point MYDRIVE_TOXIPROXY_SERVER at a toxiproxy server binary")
TOXIC_TYPES = ("latency", "bandwidth", "timeout", "reset_peer", "slow_close", "limit_data")
STREAMS = ("upstream", "downstream")
START_TIMEOUT_S = 15.0
HTTP_TIMEOUT_S = 10.0
# Removing a toxic (and /reset) waits up to 5 s for each link whose writer is stuck (e.g. its
# client was killed mid-transfer under a bandwidth toxic): Toxiproxy 2.12 logs "could not
# write to output in 5 seconds" per link, so a reset after a killed download takes N x 5 s.
REMOVE_TIMEOUT_S = 180.0


class ToxiproxyError(Exception):
    """The Toxiproxy server is missing, did not start, or refused a request."""


def find_server_binary() -> Path:
    """Where the toxiproxy server binary is; ToxiproxyError naming the set-up script if not."""
    candidates = []
    if os.environ.get(BINARY_ENV):
        candidates.append(Path(os.environ[BINARY_ENV]))
    candidates.append(ROOT / ".tools" / "bin" / "toxiproxy-server")
    on_path = shutil.which("toxiproxy-server")
    if on_path:
        candidates.append(Path(on_path))
    for path in candidates:
        if path.is_file() and os.access(path, os.X_OK):
            return path
    raise ToxiproxyError(INSTALL_HINT)


@dataclass(frozen=True)
class Toxic:
    name: str
    type: str
    stream: str = "downstream"  # downstream: upstream server -> client; upstream: the reverse
    toxicity: float = 1.0
    attributes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.type not in TOXIC_TYPES:
            raise ValueError(f"unknown toxic type {self.type!r}; one of {', '.join(TOXIC_TYPES)}")
        if self.stream not in STREAMS:
            raise ValueError(f"stream must be upstream or downstream, not {self.stream!r}")
        if self.toxicity != 1.0:
            raise ValueError("the harness uses toxicity 1 only (Toxiproxy's dice can't be seeded)")
        if self.attributes.get("jitter", 0) != 0:
            raise ValueError("the harness uses jitter 0 only (Toxiproxy's dice can't be seeded)")

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "stream": self.stream,
                "toxicity": self.toxicity, "attributes": dict(self.attributes)}


@dataclass(frozen=True)
class Proxy:
    name: str
    listen: str
    upstream: str
    enabled: bool


class ToxiproxyClient:
    """The REST API of one Toxiproxy server (``http://host:port``)."""

    def __init__(self, api_url: str, *, timeout_s: float = HTTP_TIMEOUT_S,
                 remove_timeout_s: float = REMOVE_TIMEOUT_S) -> None:
        self.api_url = api_url.rstrip("/")
        self.timeout_s = timeout_s
        self.remove_timeout_s = remove_timeout_s  # calls that remove toxics: see above

    def _call(self, method: str, path: str, body: Any = None, *,
              timeout_s: float | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.api_url + path, data=data, method=method,  # noqa: S310
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout_s or self.timeout_s) as resp:  # noqa: S310
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace").strip()
            raise ToxiproxyError(f"{method} {path}: HTTP {exc.code} {detail}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise ToxiproxyError(f"{method} {path}: {exc}") from None
        return json.loads(raw) if raw.strip() else None

    def version(self) -> str:
        req = urllib.request.Request(self.api_url + "/version")  # noqa: S310
        with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:  # noqa: S310
            return str(resp.read().decode().strip())

    def create_proxy(self, name: str, *, listen: str, upstream: str,
                     enabled: bool = True) -> Proxy:
        doc = self._call("POST", "/proxies", {"name": name, "listen": listen,
                                              "upstream": upstream, "enabled": enabled})
        return _proxy(doc)

    def proxies(self) -> dict[str, Proxy]:
        docs = self._call("GET", "/proxies")
        return {name: _proxy(doc) for name, doc in docs.items()}

    def set_enabled(self, name: str, enabled: bool) -> Proxy:
        return _proxy(self._call("POST", f"/proxies/{name}", {"enabled": enabled}))

    def add_toxic(self, proxy: str, toxic: Toxic) -> None:
        self._call("POST", f"/proxies/{proxy}/toxics", toxic.to_json())

    def toxics(self, proxy: str) -> list[Toxic]:
        return [Toxic(name=t["name"], type=t["type"], stream=t["stream"],
                      toxicity=float(t["toxicity"]), attributes=dict(t["attributes"]))
                for t in self._call("GET", f"/proxies/{proxy}/toxics")]

    def remove_toxic(self, proxy: str, name: str) -> None:
        self._call("DELETE", f"/proxies/{proxy}/toxics/{name}", timeout_s=self.remove_timeout_s)

    def reset(self) -> None:
        """Enable every proxy and remove every toxic."""
        self._call("POST", "/reset", timeout_s=self.remove_timeout_s)


def _proxy(doc: dict[str, Any]) -> Proxy:
    return Proxy(name=str(doc["name"]), listen=str(doc["listen"]),
                 upstream=str(doc["upstream"]), enabled=bool(doc["enabled"]))


class ToxiproxyServer:
    """A toxiproxy server process on a free loopback port, started and stopped by us."""

    def __init__(self, log_path: Path, *, seed: int, host: str = "127.0.0.1",
                 port: int | None = None, prefix: tuple[str, ...] = ()) -> None:
        self.binary = find_server_binary()
        self.host = host
        # ``port`` must be given when ``host`` is not an address of this namespace (the netns
        # backend runs the server inside a peer's namespace through ``prefix``).
        self.port = port if port is not None else free_port(host)
        self.prefix = prefix
        self.seed = seed
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def client(self) -> ToxiproxyClient:
        return ToxiproxyClient(f"http://{self.host}:{self.port}")

    def start(self) -> ToxiproxyClient:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            # -seed: Toxiproxy's own dice (used only with toxicity < 1 or jitter, which we
            # never set) still come from the scenario seed.
            self._proc = subprocess.Popen(
                [*self.prefix, str(self.binary), "-host", self.host, "-port", str(self.port),
                 "-seed", str(self.seed)],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        client = self.client
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                client.version()
                return client
            except OSError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise ToxiproxyError(f"toxiproxy server did not start; see "
                                         f"{self.log_path}") from None
                time.sleep(0.05)

    def stop(self) -> None:
        if self._proc is None:
            return
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
