"""``SimTransport``: the engine's Transport over the simulated network to simulated peers.

Like ``mydrive.testing.memory_transport`` it runs the product's receiver session, chunk
server and deleter in this process; unlike it, every message costs virtual time on its link
(``sim.network``), so faults scheduled on the timeline land mid-stream, and every way a real
call fails is reproduced as the gRPC transport would report it:

* a cut link or a peer set down: connection refused, ``PeerUnavailable`` at once;
* a dead service behind a live link: the proxy resets, ``PeerUnavailable`` after a round trip;
* a half-open link (``timeout`` toxic): nothing flows until the proxy closes it, or until the
  call's deadline (``rpc_timeout_s``; the probe's ``timeout_s``), then ``PeerUnavailable``;
* a peer crash, cut or reset during a stream: ``PeerUnavailable`` at the next message;
* an error the peer's code raised crosses "the wire" as its class (``MydriveError``), and
  anything else as gRPC's UNKNOWN, which the real client reports as ``PeerUnavailable``; the
  simulator also notes it as a finding (a peer's internal error).

A ``quiet`` transport serves the checkers: same peers, same reachability, same corruption,
but it moves no time, fires no trigger and records no event, so checking never changes the
run. ``ClientKilled`` (a ``BaseException``, past the engine's ``except MydriveError``)
ends an operation the scenario kills.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from mydrive.errors import MydriveError, PeerUnavailable
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.storage.receiver import ReceiverSession
from mydrive.transport.base import REUSE_WITHIN_DEADLINE, Held, PeerAddress
from mydrive.transport.signed_delete import DeleteOutcome, SignedDelete
from mydrive.transport.signed_fetch import SignedFetch
from sim.clock import SimClock
from sim.faults import FaultLog
from sim.network import CONNECT_REFUSED_MS, Breakage, Network
from sim.peer import SimPeer
from sim.trace import Trace

HEADER_BYTES = 96             # a chunk header's fixed part on the wire
DIGEST_WIRE_BYTES = 34        # per segment digest in a header
REQUEST_BYTES = 160           # a signed fetch / status / delete request
ACK_BYTES = 32
SEGMENT_FRAMING_BYTES = 16
COMMIT_MS = 2.0               # the receiver's fsync + rename when a chunk commits


class ClientKilled(BaseException):  # noqa: N818 - a process death, not an error
    """The scenario killed the client process running this operation."""


@dataclass
class Hooks:
    """What the transport tells the world: a trigger may fire; the client may be dead;
    a peer raised something no honest code path raises."""

    observe: Callable[[str, str], None]        # (event, peer): "receiving", "serving"
    client_killed: Callable[[], bool]
    peer_error: Callable[[str, BaseException], None]


class _Conn:
    """One call on one link: its deadline, and whether the far end is still there."""

    def __init__(self, t: SimTransport, target: str, service: str, deadline_s: float) -> None:
        self.t = t
        self.target = target
        self.service = service
        self.peer = t.peers[target]
        self.generation = self.peer.generation
        self.epoch = t.net.epoch
        self.deadline_ns = t.clock.now_ns + round(deadline_s * 1e9)

    def _unavailable(self, why: str) -> PeerUnavailable:
        self.t.note("sim.net.fail", peer=self.target, service=self.service, why=why)
        return PeerUnavailable(f"peer {self.target} unreachable: {why}")

    def _wait_ms(self, ms: float) -> None:
        if self.t.quiet:
            return
        left_ns = max(0, self.deadline_ns - self.t.clock.now_ns)
        self.t.clock.advance_ns(left_ns if ms * 1e6 >= left_ns else round(ms * 1e6))

    def fail_by(self, breakage: Breakage) -> PeerUnavailable:
        if breakage.kind == "refused":
            self._wait_ms(CONNECT_REFUSED_MS)
            return self._unavailable("connection refused")
        if breakage.after_ms is None:
            self._wait_ms(float("inf"))
            return self._unavailable("deadline exceeded on a half-open link")
        self._wait_ms(breakage.after_ms)
        return self._unavailable("connection reset" if breakage.kind == "reset"
                                 else "connection closed by a timeout")

    def check(self) -> None:
        """Raise PeerUnavailable if the call can't go on: crash, cut, deadline."""
        t = self.t
        if t.hooks.client_killed():
            raise ClientKilled()
        if self.peer.generation != self.generation or not self.peer.running(self.service):
            raise self._unavailable("the peer's service went away")
        if t.net.epoch != self.epoch:
            breakage = t.net.breakage(t.source, self.target, self.service)
            if breakage is not None:
                raise self.fail_by(breakage)
            self.epoch = t.net.epoch
        if not t.quiet and t.clock.now_ns > self.deadline_ns:
            raise self._unavailable("deadline exceeded")

    def message(self, size_bytes: int, stream: str, *, first: bool) -> None:
        """One message on this link in ``stream``'s direction: time passes, then checks."""
        t = self.t
        if not t.quiet:
            path = t.net.path(t.source, self.target, self.service, stream)
            t.clock.advance_ms(t.net.message_ms(path, size_bytes, first=first))
        self.check()


class SimTransport:
    """``mydrive.transport.base.Transport`` from ``source`` to the simulated peers."""

    def __init__(self, *, source: str, peers: dict[str, SimPeer], net: Network,
                 clock: SimClock, trace: Trace, fault_log: FaultLog, hooks: Hooks,
                 rpc_timeout_s: float, quiet: bool = False) -> None:
        self.source = source
        self.peers = peers
        self.net = net
        self.clock = clock
        self.trace = trace
        self.fault_log = fault_log
        self.hooks = hooks
        self.rpc_timeout_s = rpc_timeout_s
        self.quiet = quiet

    def note(self, kind: str, **fields: str | int | None) -> None:
        if not self.quiet:
            self.trace.record(kind, t_ms=self.clock.now_ms(), **fields)

    def connect(self, peer_id: str, service: str, deadline_s: float | None = None) -> _Conn:
        if self.hooks.client_killed():
            raise ClientKilled()
        if peer_id not in self.peers:
            raise PeerUnavailable(f"peer {peer_id} is unknown to the network")
        conn = _Conn(self, peer_id, service, deadline_s or self.rpc_timeout_s)
        breakage = self.net.breakage(self.source, peer_id, service)
        if breakage is not None:
            raise conn.fail_by(breakage)
        if not conn.peer.running(service):
            # The link's proxy accepts, then its upstream refuses: a reset after one RTT.
            conn.message(0, "upstream", first=True)
            conn.message(0, "downstream", first=True)
        conn.check()
        return conn

    def remote(self, peer: str, call: Callable[[], object]) -> object:
        """Run the peer's code; what it raises crosses the wire as gRPC would carry it."""
        try:
            return call()
        except MydriveError:
            raise
        except Exception as exc:  # noqa: BLE001 - UNKNOWN on the wire, a finding here
            self.hooks.peer_error(peer, exc)
            raise PeerUnavailable(f"peer {peer} failed: UNKNOWN: {type(exc).__name__}") \
                from None

    # ---- Transport protocol ---------------------------------------------------------------
    def open_store(self, peer: PeerAddress) -> SimStoreSession:
        conn = self.connect(peer.peer_id, "receiver")
        return SimStoreSession(self, conn)

    def chunk_status(self, peer: PeerAddress, chunk_id: bytes, *,
                     timeout_s: float | None = None) -> Held:
        conn = self.connect(peer.peer_id, "receiver", timeout_s)
        conn.message(REQUEST_BYTES, "upstream", first=True)
        receiver = conn.peer.receiver
        assert receiver is not None
        store = receiver.store

        def status() -> Held:
            # What the receiver servicer's ChunkStatus answers.
            if store.has(chunk_id):
                count = store.header(chunk_id).segment_count
                return Held(indices=frozenset(range(count)), committed=True)
            return Held(indices=frozenset(), committed=False)

        held = self.remote(peer.peer_id, status)
        conn.message(ACK_BYTES, "downstream", first=True)
        assert isinstance(held, Held)
        return held

    def fetch(self, peer: PeerAddress, signed: SignedFetch) -> Iterator[tuple[int, bytes]]:
        conn = self.connect(peer.peer_id, "sender")
        conn.message(REQUEST_BYTES + len(signed.request), "upstream", first=True)
        sender = conn.peer.sender
        assert sender is not None
        self.fault_log.muted = self.quiet
        try:
            stream = self.remote(peer.peer_id, lambda: sender.server.fetch(signed))
        finally:
            self.fault_log.muted = False
        assert isinstance(stream, Iterator)
        first = True
        while True:
            self.fault_log.muted = self.quiet
            try:
                item = self.remote(peer.peer_id, lambda: next(stream, None))
            finally:
                self.fault_log.muted = False
            if item is None:
                break
            assert isinstance(item, tuple)
            index, data = item
            conn.message(len(data) + SEGMENT_FRAMING_BYTES, "downstream", first=first)
            first = False
            if not self.quiet:
                self.hooks.observe("serving", peer.peer_id)
            yield index, data
        if first:  # nothing streamed: the status alone comes back
            conn.message(ACK_BYTES, "downstream", first=True)

    def delete_chunks(self, peer: PeerAddress, signed: SignedDelete) -> DeleteOutcome:
        conn = self.connect(peer.peer_id, "receiver")
        conn.message(REQUEST_BYTES + len(signed.request), "upstream", first=True)
        receiver = conn.peer.receiver
        assert receiver is not None
        outcome = self.remote(peer.peer_id, lambda: receiver.deleter.delete(signed))
        conn.message(ACK_BYTES, "downstream", first=True)
        assert isinstance(outcome, DeleteOutcome)
        return outcome


class SimStoreSession:
    """One StoreChunk stream: the product's ``ReceiverSession`` on the far side. Like the
    gRPC one it carries chunk after chunk while the receiver takes them, within the first
    part of its call's deadline (``REUSE_WITHIN_DEADLINE``)."""

    def __init__(self, t: SimTransport, conn: _Conn) -> None:
        self.t = t
        self.conn = conn
        self.session: ReceiverSession = conn.peer.open_session()
        self._reuse_until_ns = t.clock.now_ns + round(
            t.rpc_timeout_s * REUSE_WITHIN_DEADLINE * 1e9)
        self._stored = False
        self._failed = False

    @property
    def reusable(self) -> bool:
        return (self._stored and not self._failed and self.session.takes_next_chunk
                and self.t.clock.now_ns < self._reuse_until_ns)

    def start(self, header: ChunkHeader) -> Held:
        self._stored = False
        c = self.conn
        try:
            c.message(HEADER_BYTES + DIGEST_WIRE_BYTES * header.segment_count, "upstream",
                      first=True)
            held = self.t.remote(c.target, lambda: self.session.start(header))
            c.message(ACK_BYTES, "downstream", first=True)
        except BaseException:
            self._failed = True
            raise
        assert isinstance(held, Held)
        self._stored = held.committed
        return held

    def send_round(self, segments: Iterable[tuple[int, bytes | memoryview]]) -> list[int]:
        try:
            bad = self._round(segments)
        except BaseException:
            self._failed = True
            raise
        self._stored = not bad
        return bad

    def _round(self, segments: Iterable[tuple[int, bytes | memoryview]]) -> list[int]:
        c = self.conn
        first = True
        for index, data in segments:
            c.message(len(data) + SEGMENT_FRAMING_BYTES, "upstream", first=first)
            first = False
            if not self.t.quiet:
                self.t.hooks.observe("receiving", c.target)
                c.check()  # a trigger may have killed the peer just now
            self._segment(index, bytes(data))  # the receiver's own copy, as over a wire
        c.message(ACK_BYTES, "upstream", first=first)  # RoundEnd
        bad = self.t.remote(c.target, self.session.end_round)
        assert isinstance(bad, list)
        if not bad and not self.t.quiet:
            self.t.clock.advance_ms(COMMIT_MS)
        c.message(ACK_BYTES, "downstream", first=True)
        return bad

    def _segment(self, index: int, data: bytes) -> None:
        self.t.remote(self.conn.target, lambda: self.session.segment(index, data))

    def close(self) -> None:
        self._failed = True
        self.conn.peer.close_session(self.session)
