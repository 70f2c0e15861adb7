"""One simulated peer: the product's storage services over a directory, and their lifecycle.

A peer runs two services, as on a real node (``mydrive serve receiver|sender``), each with
its own objects over the shared chunk directory: the receiver (a ``ChunkStore`` that takes
uploads, a ``ChunkDeleter`` with its replay guard) and the sender (a ``ChunkStore`` it reads
and a ``ChunkServer`` with its own replay guard and the peer's fault hooks). Killing a
service drops its objects, as a process exit drops its memory (replay guards included), and
closes the upload streams it had open; starting it builds fresh ones over what is on disk,
which is how the real store resumes an interrupted upload. ``generation`` counts starts, so
a connection opened before a crash knows it is gone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mydrive.runtime.clock import Clock
from mydrive.runtime.faults import FaultHooks
from mydrive.runtime.metrics import Metrics
from mydrive.storage.chunkstore import ChunkStore
from mydrive.storage.deleter import ChunkDeleter
from mydrive.storage.receiver import ReceiverSession
from mydrive.storage.sender import ChunkServer
from mydrive.transport.signed_fetch import ReplayGuard

MAX_OPEN_SESSIONS = 4096  # upload streams open at once on one peer; more is an engine leak


@dataclass
class Receiver:
    store: ChunkStore
    deleter: ChunkDeleter
    metrics: Metrics
    sessions: list[ReceiverSession] = field(default_factory=list)


@dataclass
class Sender:
    store: ChunkStore
    server: ChunkServer


class SimPeer:
    def __init__(self, name: str, root: Path, *, clock: Clock, capacity_bytes: int,
                 faults: FaultHooks) -> None:
        self.name = name
        self.peer_id = name
        self.root = root
        self.store_dir = root / "store"
        self.store_dir.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.capacity_bytes = capacity_bytes
        self.faults = faults
        self.receiver: Receiver | None = None
        self.sender: Sender | None = None
        self.generation = 0

    # ---- lifecycle -----------------------------------------------------------------------
    def start(self, service: str | None = None) -> None:
        """Start the service (or both) that is not running; a running one is left alone."""
        if service in (None, "receiver") and self.receiver is None:
            store = ChunkStore(self.store_dir, capacity_bytes=self.capacity_bytes)
            metrics = Metrics()
            self.receiver = Receiver(store=store, metrics=metrics, deleter=ChunkDeleter(
                store, peer_id=self.peer_id, clock=self.clock, replay_guard=ReplayGuard(),
                metrics=metrics))
            self.generation += 1
        if service in (None, "sender") and self.sender is None:
            store = ChunkStore(self.store_dir, capacity_bytes=self.capacity_bytes)
            self.sender = Sender(store=store, server=ChunkServer(
                store, peer_id=self.peer_id, clock=self.clock, replay_guard=ReplayGuard(),
                metrics=Metrics(), faults=self.faults))
            self.generation += 1

    def kill(self, service: str | None = None) -> None:
        """The service's process dies: its memory goes, its open files are closed."""
        if service in (None, "receiver") and self.receiver is not None:
            for session in self.receiver.sessions:
                session.close()
            self.receiver = None
            self.generation += 1
        if service in (None, "sender") and self.sender is not None:
            self.sender = None
            self.generation += 1

    def running(self, service: str | None = None) -> bool:
        if service == "receiver":
            return self.receiver is not None
        if service == "sender":
            return self.sender is not None
        return self.receiver is not None and self.sender is not None

    # ---- upload streams --------------------------------------------------------------------
    def open_session(self) -> ReceiverSession:
        assert self.receiver is not None
        assert len(self.receiver.sessions) < MAX_OPEN_SESSIONS, "upload streams leak"
        session = ReceiverSession(self.receiver.store, self.receiver.metrics)
        self.receiver.sessions.append(session)
        return session

    def close_session(self, session: ReceiverSession) -> None:
        session.close()
        if self.receiver is not None and session in self.receiver.sessions:
            self.receiver.sessions.remove(session)
