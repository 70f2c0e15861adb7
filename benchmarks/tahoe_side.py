"""The Tahoe-LAFS side: an introducer, N storage nodes and a client node on loopback.

Tahoe-LAFS comes from PyPI into its own virtualenv (.tools/tahoe-venv, made by
benchmarks/setup.sh --tahoe) so it never mixes with mydrive's dependencies. Every node is a
``tahoe run NODEDIR`` in its own session, stopped by PID. The client encodes 3-of-5 and
wants 5 servers happy, the nearest to mydrive's R = 2 on 5 peers (both survive the loss of
any one server; Tahoe stores 5/3 = 1.67 x the file, mydrive 2 x).
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from pathlib import Path

from benchmarks.procs import (
    Measured,
    cpu_by_kind,
    free_port,
    run_measured,
    stop_process,
    wait_port,
)

ROOT = Path(__file__).resolve().parent.parent
TAHOE = ROOT / ".tools" / "tahoe-venv" / "bin" / "tahoe"
SHARES_NEEDED, SHARES_HAPPY, SHARES_TOTAL = 3, 5, 5


class TahoeGrid:
    """A whole local grid; ``put``/``get`` run the ``tahoe`` CLI against the client node."""

    def __init__(self, root: Path, *, storage_nodes: int = 5) -> None:
        self.root = root
        self.storage_nodes = storage_nodes
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.web_port = 0

    def _tahoe(self, *args: str) -> None:
        result = subprocess.run([str(TAHOE), *args], capture_output=True, text=True,
                                timeout=120)
        if result.returncode != 0:
            raise RuntimeError(f"tahoe {' '.join(args)} failed: "
                               f"{(result.stderr or result.stdout)[-2000:]}")

    def _run(self, name: str) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - kept open for the child
        # Without --allow-stdin-close `tahoe run` exits as soon as its stdin closes.
        args = [str(TAHOE), "run", "--allow-stdin-close", str(self.root / name)]
        self.procs[name] = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                            start_new_session=True)
        log.close()

    def start(self) -> None:
        if not TAHOE.exists():
            raise RuntimeError(f"{TAHOE} missing: run benchmarks/setup.sh --tahoe")
        self.root.mkdir(parents=True, exist_ok=True)
        port = free_port()
        self._tahoe("create-introducer", "--listen=tcp",
                    f"--port=tcp:{port}:interface=127.0.0.1",
                    f"--location=tcp:127.0.0.1:{port}", str(self.root / "introducer"))
        self._run("introducer")
        furl_file = self.root / "introducer" / "private" / "introducer.furl"
        deadline = time.monotonic() + 60
        while not furl_file.exists():
            if time.monotonic() > deadline:
                raise RuntimeError("Tahoe introducer wrote no introducer.furl in 60 s")
            time.sleep(0.2)
        furl = furl_file.read_text().strip()
        shares = [f"--shares-needed={SHARES_NEEDED}", f"--shares-happy={SHARES_HAPPY}",
                  f"--shares-total={SHARES_TOTAL}"]
        for i in range(self.storage_nodes):
            port = free_port()
            self._tahoe("create-node", f"--introducer={furl}", f"--nickname=storage{i}",
                        "--listen=tcp",
                        f"--port=tcp:{port}:interface=127.0.0.1",
                        f"--location=tcp:127.0.0.1:{port}", "--webport=none", *shares,
                        str(self.root / f"storage{i}"))
            self._run(f"storage{i}")
        self.web_port = free_port()
        self._tahoe("create-client", f"--introducer={furl}", "--nickname=client",
                    f"--webport=tcp:{self.web_port}:interface=127.0.0.1", *shares,
                    str(self.root / "client"))
        self._run("client")
        wait_port(self.web_port, what="Tahoe client node", timeout_s=60)
        self._wait_connected(timeout_s=120)

    def _wait_connected(self, *, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        connected = 0
        while time.monotonic() < deadline:
            try:
                url = f"http://127.0.0.1:{self.web_port}/?t=json"
                with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - loopback
                    doc = json.loads(r.read())
                connected = sum(1 for s in doc.get("servers", [])
                                if str(s.get("connection_status", "")).lower()
                                .startswith("connected"))
                if connected >= self.storage_nodes:
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"Tahoe client saw {connected} of {self.storage_nodes} storage "
                           f"servers after {timeout_s:.0f} s (logs in {self.root})")

    def stop(self) -> None:
        for proc in self.procs.values():
            stop_process(proc)
        self.procs.clear()

    def cpu_s(self) -> dict[str, float]:
        """CPU seconds so far of the client node and of all storage nodes together."""
        return cpu_by_kind({
            "tahoe_client_node": [self.procs["client"].pid],
            "tahoe_storage_nodes": [p.pid for n, p in self.procs.items()
                                    if n.startswith("storage")]})

    def share_files(self) -> list[Path]:
        """Every share file the storage nodes hold (NODEDIR/storage/shares/<prefix>/<SI>/<n>);
        shares still being written sit under shares/incoming and are left out."""
        found = [p for i in range(self.storage_nodes)
                 for p in (self.root / f"storage{i}" / "storage" / "shares").rglob("*")
                 if p.is_file() and "incoming" not in p.parts]
        if not found:
            raise RuntimeError(f"no Tahoe share files under {self.root}/storage*/storage/shares")
        return sorted(found)

    def _cli(self) -> list[str]:
        return [str(TAHOE), "-d", str(self.root / "client")]

    def put(self, local: Path) -> tuple[Measured, str]:
        """Upload an immutable file; returns the measurement and its read capability."""
        m = run_measured([*self._cli(), "put", str(local)])
        return m, m.stdout.strip().splitlines()[-1]

    def get(self, cap: str, local: Path) -> Measured:
        return run_measured([*self._cli(), "get", cap, str(local)])
