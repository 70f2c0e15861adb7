"""How the upload/download engine talks to other peers, independent of gRPC.

``mydrive.transport.grpc_client`` is the real implementation;
``mydrive.testing.memory_transport`` wires peers together in memory for unit tests; the
simulator brings its own. Implementations raise mydrive.errors classes: PeerUnavailable
when a peer cannot be reached, and whatever the remote peer answered (PermissionDenied,
ChunkNotFound, BadRequest, TooLarge, DataLoss).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Protocol

from mydrive.errors import MydriveError
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.runtime.clock import Clock
from mydrive.transport.signed_delete import DeleteOutcome, SignedDelete
from mydrive.transport.signed_fetch import SignedFetch


@dataclass(frozen=True)
class PeerAddress:
    peer_id: str
    receiver_address: str  # host:port of its Receiver service (or its nginx)
    sender_address: str    # host:port of its Sender service (or its nginx)


@dataclass(frozen=True)
class Held:
    """What a receiver already has of a chunk."""

    indices: frozenset[int]
    committed: bool


class StoreSession(Protocol):
    """One StoreChunk stream with one receiver: one chunk, or one after another.

    A session may also have a ``reusable`` attribute (a bool, read through ``reusable()``):
    True when its last chunk is stored (committed, or held committed), the receiver said the
    stream takes a next chunk, and the transport has nothing against it (a gRPC call's
    deadline near, say); ``start`` may then be called again for another chunk. A session
    without it, or whose call failed, carries one chunk and is closed after it.
    """

    def start(self, header: ChunkHeader) -> Held:
        """Announce the chunk; learn which segments to skip."""
        ...

    def send_round(self, segments: Iterable[tuple[int, bytes | memoryview]]) -> list[int]:
        """Send segments, end the round; the bad/missing indices, or [] once committed."""
        ...

    def close(self) -> None: ...


# A stream's call has one deadline (the transport's rpc_timeout_s) for all the chunks it
# carries; a transport takes new chunks on a stream only within this part of it, so each
# chunk still has at least three quarters of the deadline a stream of its own would give.
REUSE_WITHIN_DEADLINE = 0.25
# A session idle this long is closed rather than reused: well within a receiver's idle
# timeout (30 s by default; a receiver ends an idle stream), and an idle stream holds one of
# the receiver's worker threads and one of its stream slots for this peer.
IDLE_REUSE_S = 5.0


# A receiver that ended a stream while it waited (idle timeout, restart) fails its next
# header at once: only a failure that quick is taken for that and tried again on a new
# stream. One after a longer wait (a peer that hangs, a half-open link until the deadline)
# is the peer's, as it would be on a new stream: trying again would only wait once more.
STALE_FAILS_WITHIN_S = 2.0


def reusable(session: StoreSession) -> bool:
    """Whether ``session`` may carry another chunk now (StoreSession, ``reusable``)."""
    return bool(getattr(session, "reusable", False))


class Transport(Protocol):
    def open_store(self, peer: PeerAddress) -> StoreSession: ...

    def chunk_status(self, peer: PeerAddress, chunk_id: bytes, *,
                     timeout_s: float | None = None) -> Held:
        """What the peer holds of a chunk (resume); also the cheap "are you there" probe."""
        ...

    def fetch(self, peer: PeerAddress, signed: SignedFetch
              ) -> Iterator[tuple[int, bytes | memoryview]]:
        """Stream (segment index, data) of a chunk; the caller verifies every segment (and
        copies what it keeps: a view may be of the transport's own message)."""
        ...

    def delete_chunks(self, peer: PeerAddress, signed: SignedDelete) -> DeleteOutcome:
        """Ask a peer's receiver to remove chunks (owner-signed; docs/deletion.md)."""
        ...


class StoreSessions:
    """The store sessions of one upload, per peer, each reused for chunk after chunk.

    ``start`` hands out an idle session to the peer (the one used last) and announces the
    chunk on it, or opens a new one; ``done`` takes it back after the chunk: a session whose
    chunk was stored and that is ``reusable`` waits for the next chunk to that peer, any
    other (its call failed, the receiver takes one chunk per stream, the deadline is near)
    is closed, never reused. Sessions are only opened when none is idle, so a peer never has
    more than were in use at once. ``close`` (the upload ended, success or failure) closes
    the idle ones; one handed back after it is closed at once.

    A receiver may end a stream while it waits in here (its idle timeout, a restart): a
    header that fails at once (STALE_FAILS_WITHIN_S) on a reused session is announced again
    on a new one (the peer's other idle sessions are closed too), and what that one raises
    is the caller's, exactly as ``open_store`` and ``start`` would have raised without the
    pool. A failure after a longer wait is the caller's as it is.
    """

    def __init__(self, transport: Transport, clock: Clock) -> None:
        self._transport = transport
        self._clock = clock
        self._lock = threading.Lock()
        self._idle: dict[str, list[tuple[StoreSession, float]]] = {}
        self._closed = False
        self.opened = 0  # new streams (calls): what reuse saves

    def start(self, peer: PeerAddress, header: ChunkHeader) -> tuple[StoreSession, Held]:
        """A session to ``peer`` on which ``header`` was announced, and the answer."""
        reused = self._take(peer.peer_id)
        if reused is not None:
            sent_s = self._clock.monotonic_s()
            try:
                return reused, reused.start(header)
            except MydriveError:
                reused.close()
                self._drop(peer.peer_id)
                if self._clock.monotonic_s() - sent_s > STALE_FAILS_WITHIN_S:
                    raise
                # At once: most likely the receiver ended the stream; a new one decides.
            except BaseException:
                reused.close()
                raise
        session = self._transport.open_store(peer)
        with self._lock:
            self.opened += 1
        try:
            return session, session.start(header)
        except BaseException:
            session.close()
            raise

    def done(self, peer_id: str, session: StoreSession, *, stored: bool) -> None:
        """Take back a session ``start`` gave: kept if its chunk was ``stored`` and it is
        reusable, closed otherwise."""
        kept = False
        if stored and reusable(session):
            now = self._clock.monotonic_s()
            with self._lock:
                if not self._closed:
                    self._idle.setdefault(peer_id, []).append((session, now))
                    kept = True
        if not kept:
            session.close()
        for old in self._stale():
            old.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle = [s for sessions in self._idle.values() for s, _ in sessions]
            self._idle.clear()
        for session in idle:
            session.close()

    def _take(self, peer_id: str) -> StoreSession | None:
        unusable: list[StoreSession] = []
        found = None
        now = self._clock.monotonic_s()
        with self._lock:
            sessions = self._idle.get(peer_id, [])
            while sessions and found is None:
                session, since = sessions.pop()
                if now - since <= IDLE_REUSE_S and reusable(session):
                    found = session
                else:
                    unusable.append(session)
        for session in unusable:
            session.close()
        return found

    def _drop(self, peer_id: str) -> None:
        with self._lock:
            sessions = self._idle.pop(peer_id, [])
        for session, _ in sessions:
            session.close()

    def _stale(self) -> list[StoreSession]:
        """Remove and return the idle sessions past IDLE_REUSE_S (caller closes them)."""
        now = self._clock.monotonic_s()
        stale: list[StoreSession] = []
        with self._lock:
            for peer_id, sessions in list(self._idle.items()):
                keep = [(s, since) for s, since in sessions if now - since <= IDLE_REUSE_S]
                stale.extend(s for s, since in sessions if now - since > IDLE_REUSE_S)
                if keep:
                    self._idle[peer_id] = keep
                else:
                    del self._idle[peer_id]
        return stale
