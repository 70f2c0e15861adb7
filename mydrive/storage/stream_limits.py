"""How many StoreChunk streams a receiver runs at once, and for how long one may sit idle.

Each stream holds one of the gRPC server's worker threads while it waits for the sender's
next message. Without limits, a peer that opens as many idle streams as there are workers
stalls the receiver for everyone. So (docs/chunk-store.md, "Limits"):

- a calling peer may run at most ``per_peer`` streams at once, and all peers together at
  most ``total`` (below the server's worker count, so ChunkStatus and deletes still get a
  thread); one more is refused at once with PeerBusy (RESOURCE_EXHAUSTED);
- a stream that waits longer than ``idle_timeout_s`` for the sender's next message is ended
  (``on_idle``, the gRPC call's cancel); its partial chunk stays for a resume.

Time comes from the handed-in Clock. ``expire_idle`` runs in a sweeper thread that lives
only while streams are open (so nothing has to stop it); tests with a manual clock turn it
off (``sweep=False``) and call ``expire_idle`` themselves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

from mydrive.errors import BadRequest, PeerBusy
from mydrive.runtime.clock import Clock

T = TypeVar("T")

DEFAULT_STREAMS_PER_PEER = 8  # an uploader runs up to max_inflight_chunks (4) at one peer
DEFAULT_STREAMS_TOTAL = 24    # of the receiver's 32 worker threads
DEFAULT_IDLE_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class StreamLimitSettings:
    per_peer: int = DEFAULT_STREAMS_PER_PEER
    total: int = DEFAULT_STREAMS_TOTAL
    idle_timeout_s: float = DEFAULT_IDLE_TIMEOUT_S

    def validate(self, *, workers: int) -> None:
        """BadRequest unless 1 <= per_peer <= total < workers and the timeout is positive."""
        if not 1 <= self.per_peer <= self.total < workers:
            raise BadRequest(f"stream limits need 1 <= per peer ({self.per_peer}) <= total "
                             f"({self.total}) < the server's {workers} worker threads")
        if not self.idle_timeout_s > 0:
            raise BadRequest(f"stream idle timeout must be positive, not {self.idle_timeout_s}")


class StreamTicket:
    """One admitted stream. ``messages`` wraps its request iterator: the time spent waiting
    in it is what counts as idle; the time the receiver spends working does not."""

    def __init__(self, limits: StreamLimits, peer: str, on_idle: Callable[[], None]) -> None:
        self._limits = limits
        self.peer = peer
        self._on_idle = on_idle
        self.waiting_since: float | None = None
        self.expired = False
        self._released = False

    def messages(self, requests: Iterable[T]) -> Iterator[T]:
        it = iter(requests)
        while True:
            self._limits._set_waiting(self, True)
            try:
                item = next(it)
            except StopIteration:
                return
            finally:
                self._limits._set_waiting(self, False)
            yield item

    def release(self) -> None:
        self._limits._release(self)


class StreamLimits:
    def __init__(self, settings: StreamLimitSettings, clock: Clock, *,
                 sweep: bool = True) -> None:
        self.settings = settings
        self.clock = clock
        self._sweep = sweep
        self._sweeping = False
        self._lock = threading.Lock()
        self._by_peer: dict[str, set[StreamTicket]] = {}
        self._count = 0

    def admit(self, peer: str, on_idle: Callable[[], None]) -> StreamTicket:
        """A ticket for one more stream from ``peer``; PeerBusy if it would pass a limit."""
        with self._lock:
            mine = self._by_peer.get(peer, set())
            if len(mine) >= self.settings.per_peer:
                raise PeerBusy(f"this peer already runs {len(mine)} uploads from yours "
                               f"(at most {self.settings.per_peer}); try another peer")
            if self._count >= self.settings.total:
                raise PeerBusy(f"this peer already runs {self._count} uploads (at most "
                               f"{self.settings.total}); try another peer")
            ticket = StreamTicket(self, peer, on_idle)
            self._by_peer.setdefault(peer, set()).add(ticket)
            self._count += 1
            if self._sweep and not self._sweeping:
                self._sweeping = True
                threading.Thread(target=self._sweeper, daemon=True,
                                 name="stream-idle-sweeper").start()
            return ticket

    def active(self, peer: str | None = None) -> int:
        with self._lock:
            return self._count if peer is None else len(self._by_peer.get(peer, ()))

    def expire_idle(self) -> int:
        """End every stream that has waited longer than the idle timeout; how many."""
        now = self.clock.monotonic_s()
        with self._lock:
            idle = [t for mine in self._by_peer.values() for t in mine
                    if not t.expired and t.waiting_since is not None
                    and now - t.waiting_since > self.settings.idle_timeout_s]
            for t in idle:
                t.expired = True
        for t in idle:  # outside the lock: cancelling wakes the stream's thread
            t._on_idle()
        return len(idle)

    def _sweeper(self) -> None:
        """Expire idle streams a few times per idle timeout (real-time pauses; what is idle
        is decided by the clock) until no stream is open."""
        interval = min(1.0, self.settings.idle_timeout_s / 4)
        while True:
            time.sleep(interval)
            self.expire_idle()
            with self._lock:
                if self._count == 0:
                    self._sweeping = False
                    return

    def _set_waiting(self, ticket: StreamTicket, waiting: bool) -> None:
        with self._lock:
            ticket.waiting_since = self.clock.monotonic_s() if waiting else None

    def _release(self, ticket: StreamTicket) -> None:
        with self._lock:
            if ticket._released:
                return
            ticket._released = True
            mine = self._by_peer.get(ticket.peer)
            if mine is not None:
                mine.discard(ticket)
                if not mine:
                    del self._by_peer[ticket.peer]
            self._count -= 1
