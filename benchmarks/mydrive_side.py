"""The mydrive side, driven through its CLI exactly as a user would drive it.

``mydrive cluster up --home H --peers 5 [--no-tls] --detach`` starts the network (each
service a process leading its own session), ``cluster status --json`` names their PIDs,
``put``/``get --json`` run as measured children, ``cluster down`` stops it all.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.procs import (
    Measured,
    cpu_by_kind,
    reset_peak_rss,
    run_measured,
    session_peak_rss_bytes,
)

MYDRIVE = [sys.executable, "-m", "mydrive"]
SERVICE_KINDS = ("receiver", "sender", "nginx")
USER, PASSPHRASE = "bench", "bench passphrase, not secret"


class MydriveNetwork:
    """One local N-peer network; the client acts on peer-0 as user ``bench``."""

    def __init__(self, home: Path, *, tls: bool, peers: int = 5, replicas: int = 2) -> None:
        self.home = home
        self.tls = tls
        self.peers = peers
        self.replicas = replicas
        self.env = {**os.environ, "MYDRIVE_PEER": str(home / "peer-0"),
                    "MYDRIVE_USER": USER, "MYDRIVE_PASSPHRASE": PASSPHRASE}
        self.started = False

    def _cli(self, *args: str) -> str:
        result = subprocess.run([*MYDRIVE, *args], env=self.env, capture_output=True,
                                text=True, timeout=300)
        if result.returncode != 0:
            raise RuntimeError(f"mydrive {' '.join(args)} exited {result.returncode}: "
                               f"{result.stderr[-2000:]}")
        return result.stdout

    def up(self) -> None:
        """Start (or restart what is missing of) the network and make the user once."""
        self._cli("cluster", "up", "--home", str(self.home), "--peers", str(self.peers),
                  "--replicas", str(self.replicas), "--tls" if self.tls else "--no-tls",
                  "--detach")
        if not self.started:
            self._cli("user", "create")
        self.started = True

    def down(self) -> None:
        if self.home.exists():
            self._cli("cluster", "down", "--home", str(self.home))

    def services(self) -> list[dict[str, Any]]:
        """[{peer, peer_id, kind, pid}] of every service process, from ``cluster status``."""
        result = subprocess.run([*MYDRIVE, "cluster", "status", "--home", str(self.home),
                                 "--json"], env=self.env, capture_output=True, text=True,
                                timeout=60)
        doc = json.loads(result.stdout)
        return [{"peer": p["name"], "peer_id": p["peer_id"], "kind": kind, "pid": s["pid"]}
                for p in doc["peers"] for kind, s in p["services"].items()
                if s["pid"] is not None and s["alive"]]

    def cpu_s_by_kind(self) -> dict[str, float]:
        """CPU seconds so far of all receivers, all senders, all nginx (and their kernel part)."""
        sessions: dict[str, list[int]] = {kind: [] for kind in SERVICE_KINDS
                                          if self.tls or kind != "nginx"}
        for s in self.services():
            if s["kind"] in sessions:
                sessions[s["kind"]].append(s["pid"])
        return cpu_by_kind(sessions)

    def reset_peaks(self) -> bool:
        return all([reset_peak_rss(s["pid"]) for s in self.services()])

    def peak_rss_by_kind(self) -> dict[str, int]:
        """The largest peak RSS of any one process of each service kind since reset_peaks."""
        peaks: dict[str, int] = {}
        for s in self.services():
            if s["kind"] in SERVICE_KINDS:
                peaks[s["kind"]] = max(peaks.get(s["kind"], 0),
                                       session_peak_rss_bytes(s["pid"]))
        return peaks

    def put_args(self, local: Path, remote: str, fault_plan: Path | None = None) -> list[str]:
        extra = ["--fault-plan", str(fault_plan)] if fault_plan is not None else []
        return [*MYDRIVE, "put", str(local), remote, "--json", *extra]

    def get_args(self, remote: str, out_dir: Path) -> list[str]:
        return [*MYDRIVE, "get", remote, "--out", str(out_dir), "--overwrite", "--json"]

    def put(self, local: Path, remote: str, *,
            fault_plan: Path | None = None) -> tuple[Measured, dict[str, Any]]:
        m = run_measured(self.put_args(local, remote, fault_plan), env=self.env)
        return m, json.loads(m.stdout)

    def get(self, remote: str, out_dir: Path) -> tuple[Measured, dict[str, Any]]:
        m = run_measured(self.get_args(remote, out_dir), env=self.env)
        return m, json.loads(m.stdout)

    def command_overhead(self) -> Measured:
        """``mydrive ls``: start-up, imports and the passphrase's key derivation, no data.

        Every put and get pays this once; it is part of their figures (a user pays it too).
        """
        return run_measured([*MYDRIVE, "ls", "--json"], env=self.env)

    def rm(self, remote: str) -> None:
        self._cli("rm", remote)
        self._cli("gc")
