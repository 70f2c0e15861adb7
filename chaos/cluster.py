"""The Cluster interface every backend implements (local processes, network namespaces,
and later docker compose). Nothing here names a PID, a namespace or a container.

A *link* is directed: ``(source, target)`` is the path peer ``source`` dials to reach
``target``'s receiver or sender. In mydrive only the peer acting for a user dials (uploads
to receivers, fetches from senders), so cutting ``(owner, X)`` is what a partition between
the owner and X looks like to the data path.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mydrive.node.serve import SERVICES

from .toxiproxy import Toxic

SERVICE_KINDS = SERVICES  # the services a link reaches: a peer's receiver and sender


@dataclass(frozen=True)
class ChaosPeer:
    name: str
    peer_id: str
    receiver_address: str  # where the service itself listens
    sender_address: str


class Cluster(Protocol):
    # ---- lifecycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Create the peers (if needed), the network between them, and start everything."""
        ...

    def stop(self) -> None:
        """Stop every service gracefully and tear the network down."""
        ...

    def kill(self, peer: str, service: str | None = None) -> None:
        """Kill a peer's service (or all its services) at once, no clean-up (SIGKILL-like)."""
        ...

    def restart(self, peer: str, *, graceful: bool = True) -> None:
        """Stop (gracefully or not) and start a peer's services again; waits until healthy."""
        ...

    def resume(self, peer: str) -> None:
        """Start whichever of a peer's services are not running; waits until healthy."""
        ...

    # ---- network -----------------------------------------------------------------------
    def isolate(self, peer: str) -> None:
        """Cut every link into and out of ``peer`` (connections refused)."""
        ...

    def cut(self, source: str, target: str) -> None:
        """Cut one directed link: ``source`` can no longer reach ``target``."""
        ...

    def set_down(self, peer: str, down: bool) -> None:
        """Take ``peer`` off the network (every link into it) or bring it back."""
        ...

    def add_toxic(self, target: str, toxic: Toxic, *, source: str | None = None,
                  service: str | None = None) -> None:
        """Add a toxic on the links into ``target`` (from ``source`` only, if given)."""
        ...

    def remove_toxic(self, target: str, name: str) -> None:
        """Remove the toxic called ``name`` from the links into ``target``."""
        ...

    def heal(self) -> None:
        """Undo every isolate, cut, down and toxic."""
        ...

    # ---- what is where -----------------------------------------------------------------
    def peers(self) -> list[ChaosPeer]:
        ...

    def dialed_address(self, source: str, target: str, service: str) -> str:
        """The host:port ``source`` dials for ``target``'s service (a proxy, in chaos runs)."""
        ...

    def running(self, peer: str) -> bool:
        """True if every service of ``peer`` is up and healthy."""
        ...

    def reachable(self, source: str, target: str) -> bool:
        """True if ``target`` runs and the link from ``source`` is not cut."""
        ...

    def peer_dir(self, peer: str) -> Path:
        """The peer's directory as seen from the harness (a bind mount for containers)."""
        ...

    def run_cli(self, peer: str, args: list[str], *, env: dict[str, str],
                log_path: Path) -> subprocess.Popen[bytes]:
        """Start ``mydrive ARGS`` acting on ``peer``'s directory; stdout is the caller's."""
        ...
