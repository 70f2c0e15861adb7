"""The local-process backend: mydrive.node.cluster's peers on loopback, linked through Toxiproxy.

Peer ids come from the seed (the same seed, the same peers and so the same placement); ports
are whatever is free on this machine, which the seed can't promise.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mydrive.errors import PeerUnavailable
from mydrive.node import cluster as local
from mydrive.node.peerdir import PeerDir, PeerIdSource

from .cluster import SERVICE_KINDS, ChaosPeer
from .network import LinkNetwork
from .toxiproxy import Toxic, ToxiproxyServer

START_ATTEMPTS = 3
START_TIMEOUT_S = 15.0  # shorter than a cluster's own: a start that fails is tried again


def seeded_peer_ids(seed: int) -> PeerIdSource:
    """Peer ids drawn from ``seed``: a cluster made twice with one seed has the same ids."""
    rng = random.Random(f"peer-ids/{seed}")
    return lambda: rng.randbytes(8).hex()


def cli_process(peer_dir: Path, args: list[str], *, env: dict[str, str], log_path: Path,
                prefix: Sequence[str] = ()) -> subprocess.Popen[bytes]:
    """``mydrive ARGS[0] --peer PEER_DIR ARGS[1:]`` (after ``prefix``, e.g. ``ip netns exec
    NS``); stdout is the caller's, stderr goes to ``log_path``."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [*prefix, sys.executable, "-m", "mydrive", *args[:1], "--peer", str(peer_dir),
             *args[1:]],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log,
            env={**os.environ, **env})


class LocalCluster:
    """N peers as OS processes on 127.0.0.1, every link through its own Toxiproxy proxy."""

    def __init__(self, home: Path, peers: int, *, seed: int, replicas: int = 2,
                 service_env: dict[str, str] | None = None,
                 peer_fault_plan: dict[str, Path] | None = None, **overrides: Any) -> None:
        self.home = home
        self.count = peers
        self.replicas = replicas
        self.seed = seed
        self.service_env = dict(service_env or {})
        # Peers whose services run seeded fault hooks (--fault-plan FILE)
        self.peer_fault_plan = dict(peer_fault_plan or {})
        self.overrides = overrides
        self.toxiproxy = ToxiproxyServer(home / "toxiproxy.log", seed=seed)
        self.network: LinkNetwork | None = None
        self._dirs: dict[str, Path] = {}
        self._peers: list[ChaosPeer] = []

    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        dirs = local.create(self.home, self.count, replicas=self.replicas,
                            new_peer_id=seeded_peer_ids(self.seed), **self.overrides)
        self._dirs = {d.config.name: d.root for d in dirs}
        self._peers = [ChaosPeer(name=d.config.name, peer_id=d.config.peer_id,
                                 receiver_address=d.config.receiver_address,
                                 sender_address=d.config.sender_address) for d in dirs]
        try:
            # Services first: their ports are then taken, so the proxies' OS-chosen listen
            # ports can't collide with them. Services never dial other peers, so they need
            # not see the proxy addresses; the clients read them from the metadata.
            plain = [name for name in self._dirs if name not in self.peer_fault_plan]
            if plain:
                self._start_group(plain)
            for name in self.peer_fault_plan:
                self.resume(name)
            self.network = LinkNetwork(self.toxiproxy.start(), self._peers)
            self.network.create()
            self.network.publish(self._dirs)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        try:
            if self._dirs:
                local.stop(self.home)
        finally:
            self.toxiproxy.stop()

    def kill(self, peer: str, service: str | None = None) -> None:
        kinds = None if service is None else (service,)
        local.stop(self.home, only=[peer], hard=True, kinds=kinds)

    def restart(self, peer: str, *, graceful: bool = True) -> None:
        local.stop(self.home, only=[peer], hard=not graceful)
        self.resume(peer)

    def resume(self, peer: str) -> None:
        self._start_group([peer], self.peer_fault_plan.get(peer))

    def _start_group(self, names: list[str], fault_plan: Path | None = None) -> None:
        for attempt in range(START_ATTEMPTS):
            try:
                local.start(self.home, env=self.service_env, only=names,
                            timeout_s=START_TIMEOUT_S, fault_plan=fault_plan)
                return
            except PeerUnavailable:
                # Its port was taken meanwhile by some process's outgoing connection (the
                # ports are chosen at creation and bound at start); such sockets are short-
                # lived, so starting again is the remedy.
                if attempt == START_ATTEMPTS - 1:
                    raise

    # ---- network -----------------------------------------------------------------------
    def _net(self) -> LinkNetwork:
        assert self.network is not None, "cluster not started"
        return self.network

    def isolate(self, peer: str) -> None:
        self._net().isolate(peer)

    def cut(self, source: str, target: str) -> None:
        self._net().set_link(source, target, False)

    def set_down(self, peer: str, down: bool) -> None:
        self._net().set_down(peer, down)

    def add_toxic(self, target: str, toxic: Toxic, *, source: str | None = None,
                  service: str | None = None) -> None:
        self._net().add_toxic(target, toxic, source=source, service=service)

    def remove_toxic(self, target: str, name: str) -> None:
        self._net().remove_toxic(target, name)

    def heal(self) -> None:
        self._net().heal()

    # ---- what is where -----------------------------------------------------------------
    def peers(self) -> list[ChaosPeer]:
        return list(self._peers)

    def dialed_address(self, source: str, target: str, service: str) -> str:
        assert service in SERVICE_KINDS
        return self._net().listen[(source, target, service)]

    def running(self, peer: str) -> bool:
        for entry in local.status(self.home):
            if entry["name"] == peer:
                return all(s.healthy for s in entry["services"])
        raise KeyError(peer)

    def running_services(self) -> dict[str, bool]:
        return {entry["name"]: all(s.alive for s in entry["services"])
                for entry in local.status(self.home)}

    def reachable(self, source: str, target: str) -> bool:
        return self.running(target) and self._net().link_open(source, target)

    def peer_dir(self, peer: str) -> Path:
        return self._dirs[peer]

    def peer_config(self, peer: str) -> PeerDir:
        return PeerDir(self._dirs[peer])

    def run_cli(self, peer: str, args: list[str], *, env: dict[str, str],
                log_path: Path) -> subprocess.Popen[bytes]:
        return cli_process(self._dirs[peer], args, env=env, log_path=log_path)
