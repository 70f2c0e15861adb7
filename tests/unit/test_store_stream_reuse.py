"""One StoreChunk stream carries chunk after chunk (docs/protocol.md, "StoreChunk").

The receiver (its real gRPC server in this process, or ReceiverSession itself) takes the next
chunk's header after a chunk is committed, checks every chunk as if it had a stream of its
own, and refuses a header at any other point; the owner's uploader reuses its streams per
peer (StoreSessions), only where the receiver offered it, and never a failed one. Peers run
mixed versions: a receiver from before (one chunk per stream, no ``next_chunk``) still gets
every chunk, and a client from before (one chunk, then close) still stores on a new one.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import replace
from pathlib import Path

import grpc
import pytest

from mydrive.engine.upload import PeerInfo, upload_file
from mydrive.errors import BadRequest, MydriveError, PeerBusy, PeerUnavailable
from mydrive.formats.chunkheader import ChunkHeader
from mydrive.node.peerdir import CONFIG_NAME, PeerDir, init_peer
from mydrive.node.serve import build_server
from mydrive.runtime.clock import SystemClock
from mydrive.runtime.events import EventLog
from mydrive.runtime.executor import inline_executor, thread_pool
from mydrive.runtime.metrics import Metrics
from mydrive.storage import receiver as receiver_module
from mydrive.storage.chunkstore import ChunkStore
from mydrive.storage.receiver import MAX_CHUNKS_PER_STREAM, ReceiverSession
from mydrive.storage.receiver_service import ReceiverServicer
from mydrive.testing.clock import ManualClock
from mydrive.testing.memory_transport import MemoryTransport
from mydrive.transport.base import (
    IDLE_REUSE_S,
    STALE_FAILS_WITHIN_S,
    Held,
    PeerAddress,
    StoreSession,
    StoreSessions,
    reusable,
)
from mydrive.transport.codec import header_from_pb
from mydrive.transport.grpc_client import GrpcTransport
from mydrive.transport.status import abort
from mydrive.transport.wire import mydrive_pb2 as pb
from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc
from tests.store_streams import StepStream
from tests.strategies import SMALL_SETTINGS, fast_user, random_chunk, random_file

CHUNK = 8 * 4096  # 8 segments of 4 KiB


# ---- receivers on loopback ---------------------------------------------------------------

@contextlib.contextmanager
def _receiver(root: Path, **config: object) -> Iterator[tuple[PeerDir, Metrics]]:
    """The real receiver service (build_server) with these peer.json settings."""
    peer_root = init_peer(root).root
    path = peer_root / CONFIG_NAME
    path.write_text(json.dumps({**json.loads(path.read_text()), **config}))
    peer = PeerDir(peer_root)
    metrics = Metrics()
    server, _ = build_server("receiver", peer, metrics)
    server.start()
    try:
        yield peer, metrics
    finally:
        server.stop(grace=None)


class OneChunkReceiver(ReceiverServicer):
    """A receiver from before streams carried more than one chunk: StoreChunk exactly as it
    was (one header; the stream ends after Committed or "held, committed"; no
    ``next_chunk``). ``offers_more``: it says ``next_chunk`` all the same and still ends
    the stream (a liar, or a receiver restarted between two chunks)."""

    def __init__(self, store: ChunkStore, *, offers_more: bool = False) -> None:
        super().__init__(store, Metrics())
        self.offers_more = offers_more
        self.streams = 0

    def StoreChunk(self, request_iterator: Iterator[pb.StoreMsg],  # noqa: N802
                   context: grpc.ServicerContext) -> Iterator[pb.StoreAck]:
        self.streams += 1
        session = ReceiverSession(self.store, self.metrics)
        try:
            first = next(request_iterator, None)
            if first is None or first.WhichOneof("msg") != "header":
                raise BadRequest("the first StoreChunk message must be the chunk header")
            held = session.start(header_from_pb(first.header))
            yield pb.StoreAck(held=pb.SegmentsHeld(indices=sorted(held.indices),
                                                   committed=held.committed,
                                                   next_chunk=self.offers_more))
            if held.committed:
                return
            for msg in request_iterator:
                kind = msg.WhichOneof("msg")
                if kind == "segment":
                    session.segment(msg.segment.index, bytes(msg.segment.data))
                elif kind == "round_end":
                    bad = session.end_round()
                    if not bad:
                        yield pb.StoreAck(committed=pb.Committed())
                        return
                    yield pb.StoreAck(bad=pb.BadSegments(indices=bad))
                else:
                    raise BadRequest(f"unexpected StoreChunk message {kind!r}")
        except MydriveError as exc:
            abort(context, exc)
        finally:
            session.close()


@contextlib.contextmanager
def _serve(servicer: ReceiverServicer) -> Iterator[str]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    pb_grpc.add_ReceiverServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


def _store_of(peer: PeerDir) -> ChunkStore:
    return ChunkStore(peer.store_dir, capacity_bytes=1 << 40)


def _whole(store: ChunkStore, header: ChunkHeader) -> bytes:
    return b"".join(store.read_segment(header.chunk_id, i) for i in range(header.segment_count))


def _streams(metrics: Metrics) -> int:
    return int(metrics.value("receiver_streams_total"))


def _idle_ended(metrics: Metrics, expected: int) -> bool:
    """Whether the receiver counted ``expected`` idle-ended streams within a few seconds
    (its handler counts after the caller already saw the call cancelled)."""
    deadline = time.monotonic() + 5
    while metrics.value("receiver_streams_idle_ended_total") != expected:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ---- the receiver: several chunks on one stream ---------------------------------------------

def test_receiver_session_takes_chunk_after_chunk(tmp_path: Path) -> None:
    """ReceiverSession: after a commit, or a header answered "held, committed", the next
    header starts the next chunk; each is verified and committed on its own."""
    store = ChunkStore(tmp_path, capacity_bytes=1 << 30)
    session = ReceiverSession(store, Metrics())
    chunks = [random_chunk(CHUNK) for _ in range(3)]
    for header, segments in chunks:
        held = session.start(header)
        assert held == Held(indices=frozenset(), committed=False)
        assert session.takes_next_chunk
        bad = [0, 3]
        for i, data in enumerate(segments):
            session.segment(i, b"x" * len(data) if i in bad else data)
        assert session.end_round() == bad  # each chunk verified segment by segment
        for i in bad:
            session.segment(i, segments[i])
        assert session.end_round() == []
    again = session.start(chunks[0][0])  # a committed one: a no-op, and the stream goes on
    assert again.committed and again.indices == frozenset(range(8))
    last, last_segments = random_chunk(CHUNK)
    session.start(last)
    for i, data in enumerate(last_segments):
        session.segment(i, data)
    assert session.end_round() == []
    session.close()
    for header, segments in [*chunks, (last, last_segments)]:
        assert _whole(store, header) == b"".join(segments)


def test_receiver_stream_carries_several_chunks(tmp_path: Path) -> None:
    """Over gRPC: one stream stores four chunks (one already held), each header answered
    with ``next_chunk``; ending the requests then ends the call cleanly."""
    with _receiver(tmp_path / "r") as (peer, metrics):
        channel = grpc.insecure_channel(peer.config.receiver_address)
        stream = StepStream(channel)
        chunks = [random_chunk(CHUNK) for _ in range(3)]
        for header, segments in chunks:
            held = stream.store(header, segments)
            assert held.held.next_chunk and not held.held.committed
        held = stream.store(*chunks[1])
        assert held.held.committed and held.held.next_chunk
        stream.end()
        assert list(stream.call) == []
        assert stream.call.code() == grpc.StatusCode.OK
        channel.close()
        store = _store_of(peer)
        for header, segments in chunks:
            assert _whole(store, header) == b"".join(segments)
        assert _streams(metrics) == 1
        assert metrics.value("receiver_chunks_committed_total") == 3


def test_old_style_single_chunk_stream_on_new_receiver(tmp_path: Path) -> None:
    """A client from before sends one chunk, then half-closes (or cancels at once): the
    chunk is committed, the call ends without error, and its stream slot (here the only
    one) is free for the next stream at once."""
    with _receiver(tmp_path / "r", max_streams_per_peer=1) as (peer, _):
        channel = grpc.insecure_channel(peer.config.receiver_address)
        header, segments = random_chunk(CHUNK)
        polite = StepStream(channel)
        polite.store(header, segments)
        polite.end()
        assert list(polite.call) == [] and polite.call.code() == grpc.StatusCode.OK
        assert _store_of(peer).has(header.chunk_id)
        for _ in range(3):  # what the old GrpcTransport's close did: half-close and cancel
            other, other_segments = random_chunk(CHUNK)
            started = time.monotonic()
            while True:
                abrupt = StepStream(channel)
                try:
                    abrupt.store(other, other_segments)
                    break
                except grpc.RpcError as exc:  # the previous one's slot not yet released
                    assert exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    assert time.monotonic() - started < 2.0, "a finished stream kept its slot"
                    time.sleep(0.01)
            abrupt.close()
            assert _store_of(peer).has(other.chunk_id)
        channel.close()


def _started_when_slot_is_free(transport: GrpcTransport, address: PeerAddress,
                               header: ChunkHeader, wait_s: float = 5.0) -> StoreSession:
    """A new session with ``header`` announced (not held), once the receiver has released
    the previous stream's slot; PeerBusy after ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        session = transport.open_store(address)
        try:
            assert not session.start(header).committed
            return session
        except PeerBusy:
            session.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_client_sends_one_chunk_per_stream_to_a_new_receiver_too(tmp_path: Path) -> None:
    """The transport's session used for one chunk (as repair does) against the new receiver:
    stored, and closing it leaves nothing open (the one stream slot comes back: the
    receiver sees the cancel a moment after ``close``, so the next start may wait for it)."""
    with _receiver(tmp_path / "r", max_streams_per_peer=1) as (peer, metrics):
        transport = GrpcTransport(rpc_timeout_s=10)
        for _ in range(3):
            header, segments = random_chunk(CHUNK)
            session = _started_when_slot_is_free(transport, peer.config.address(), header)
            try:
                assert session.send_round(enumerate(segments)) == []
                assert session.reusable
            finally:
                session.close()
            assert not session.reusable
        transport.close()
        assert _streams(metrics) == 3


# ---- adversarial: a header out of turn, a bad header on a reused stream ----------------------

def _refused(stream: StepStream, header: ChunkHeader | None = None) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as err:
        if header is not None:
            stream.header(header)
        else:
            stream.ack()
    return err.value


def test_second_header_before_commit_is_refused(tmp_path: Path) -> None:
    """A next header while the stream's chunk is not committed (right after its Held, or
    mid-rounds after a Bad answer) ends the stream with INVALID_ARGUMENT; neither chunk
    is committed, and the first resumes from its good segments on a later stream."""
    with _receiver(tmp_path / "r") as (peer, _):
        channel = grpc.insecure_channel(peer.config.receiver_address)
        (first, first_segments), (second, _) = random_chunk(CHUNK), random_chunk(CHUNK)
        stream = StepStream(channel)
        stream.header(first)
        err = _refused(stream, second)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "before the stream's open chunk was committed" in (err.details() or "")

        stream = StepStream(channel)
        stream.header(first)
        bad = stream.round(enumerate(first_segments[:5]))
        assert list(bad.bad.indices) == [5, 6, 7]
        err = _refused(stream, second)
        assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
        store = _store_of(peer)
        assert not store.has(first.chunk_id) and not store.has(second.chunk_id)

        resumed = StepStream(channel)
        held = resumed.store(first, first_segments)
        assert set(held.held.indices) == set(range(5))
        resumed.close()
        channel.close()


def test_bad_header_on_reused_stream_is_refused_committed_chunk_kept(tmp_path: Path) -> None:
    """After a committed chunk, a next header that fails validation (a malformed one, or the
    same chunk under another owner key) is refused as on a stream of its own, and ends the
    stream; the committed chunk stays as it was. Nor can segments or a RoundEnd follow a
    commit without a header."""
    with _receiver(tmp_path / "r") as (peer, _):
        channel = grpc.insecure_channel(peer.config.receiver_address)
        header, segments = random_chunk(CHUNK)
        malformed = replace(random_chunk(CHUNK)[0], chunk_size_bytes=3 * CHUNK)
        squat = replace(header, owner_public_key=b"m" * 32)
        expected = {
            "malformed": (malformed, grpc.StatusCode.INVALID_ARGUMENT),
            "squat": (squat, grpc.StatusCode.PERMISSION_DENIED),
            "round_end": (None, grpc.StatusCode.INVALID_ARGUMENT),
            "segment": (None, grpc.StatusCode.INVALID_ARGUMENT),
        }
        for what, (bad_header, code) in expected.items():
            stream = StepStream(channel)
            held = stream.store(header, segments)
            assert held.held.next_chunk
            if what == "round_end":
                stream.send(pb.StoreMsg(round_end=pb.RoundEnd()))
            elif what == "segment":
                stream.send(pb.StoreMsg(segment=pb.Segment(index=0, data=segments[0])))
            err = _refused(stream, bad_header)
            assert err.code() == code, (what, err)
            store = _store_of(peer)
            assert _whole(store, header) == b"".join(segments)
            assert store.header(header.chunk_id) == header
        assert not _store_of(peer).has(malformed.chunk_id)
        channel.close()


def test_stream_carries_at_most_max_chunks(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The last chunk a stream may carry is answered ``next_chunk: false``; after its
    commit the receiver ends the call (and ReceiverSession refuses one more header)."""
    monkeypatch.setattr(receiver_module, "MAX_CHUNKS_PER_STREAM", 2)
    with _receiver(tmp_path / "r") as (peer, _):
        channel = grpc.insecure_channel(peer.config.receiver_address)
        stream = StepStream(channel)
        assert stream.store(*random_chunk(CHUNK)).held.next_chunk
        assert not stream.store(*random_chunk(CHUNK)).held.next_chunk
        assert list(stream.call) == [] and stream.call.code() == grpc.StatusCode.OK
        channel.close()
    session = ReceiverSession(ChunkStore(tmp_path / "s", capacity_bytes=1 << 30), Metrics())
    for _ in range(2):
        header, segments = random_chunk(CHUNK)
        session.start(header)
        for i, data in enumerate(segments):
            session.segment(i, data)
        assert session.end_round() == []
    assert not session.takes_next_chunk
    with pytest.raises(BadRequest, match="at most 2 chunks"):
        session.start(random_chunk(CHUNK)[0])
    assert MAX_CHUNKS_PER_STREAM >= 16  # the real cap: a new call is rare


# ---- stream limits and idle timeout still apply -------------------------------------------

def test_reused_stream_keeps_one_slot_and_idles_out(tmp_path: Path) -> None:
    """A stream carrying many chunks holds one slot of its caller's stream limit (here 1:
    a second stream meanwhile is PeerBusy), and the gap between two of its chunks counts
    as idle: after the timeout the receiver ends it and the slot is free again."""
    with _receiver(tmp_path / "r", max_streams_per_peer=1,
                   stream_idle_timeout_s=0.3) as (peer, metrics):
        channel = grpc.insecure_channel(peer.config.receiver_address)
        stream = StepStream(channel)
        for _ in range(3):
            stream.store(*random_chunk(CHUNK))
            with pytest.raises(grpc.RpcError) as err:
                StepStream(channel).header(random_chunk(CHUNK)[0])
            assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        started = time.monotonic()
        err_idle = _refused(stream)  # nothing more sent: the receiver ends it
        assert err_idle.code() == grpc.StatusCode.CANCELLED
        assert 0.25 <= time.monotonic() - started < 5.0
        assert _idle_ended(metrics, 1)
        again = StepStream(channel)
        again.store(*random_chunk(CHUNK))
        again.close()
        channel.close()


# ---- the owner's side: StoreSessions over gRPC ----------------------------------------------

def _upload(tmp_path: Path, addresses: list[PeerAddress], *, chunks: int = 20,
            executor: object = inline_executor) -> tuple[EventLog, GrpcTransport]:
    src = random_file(tmp_path / "src", chunks * (SMALL_SETTINGS.chunk_size_bytes - 16) - 100)
    events = EventLog()
    transport = GrpcTransport(rpc_timeout_s=30)
    result = upload_file(src, keys=fast_user(), owner_peer_id="owner",
                         peers=[PeerInfo(address=a, capacity_bytes=10**12) for a in addresses],
                         settings=SMALL_SETTINGS, transport=transport, clock=SystemClock(),
                         executor=executor, events=events)  # type: ignore[arg-type]
    assert len(result.chunks) == chunks
    transport.close()
    return events, transport


def test_upload_reuses_one_stream_per_peer(tmp_path: Path) -> None:
    """A 20-chunk upload (R = 2: 40 replicas) to four new receivers, one replica at a time:
    each receiver gets exactly one StoreChunk call, and commits every chunk it was sent."""
    with contextlib.ExitStack() as stack:
        receivers = [stack.enter_context(_receiver(tmp_path / f"p{i}")) for i in range(4)]
        events, _ = _upload(tmp_path, [p.config.address() for p, _ in receivers])
    stored = events.of_kind("upload.stored")
    assert len(stored) == 40 and not events.of_kind("upload.failover")
    for peer, metrics in receivers:
        mine = sum(1 for e in stored if dict(e.fields)["peer"] == peer.config.peer_id)
        assert metrics.value("receiver_chunks_committed_total") == mine > 0
        assert _streams(metrics) == 1


def test_upload_in_parallel_opens_at_most_what_is_in_flight(tmp_path: Path) -> None:
    """The same upload on the engine's threads: streams per peer at most the chunks in
    flight (3), far below one per replica."""
    with contextlib.ExitStack() as stack:
        receivers = [stack.enter_context(_receiver(tmp_path / f"p{i}")) for i in range(4)]
        events, _ = _upload(tmp_path, [p.config.address() for p, _ in receivers],
                            executor=thread_pool)
    assert not events.of_kind("upload.failover")
    for _, metrics in receivers:
        assert 1 <= _streams(metrics) <= SMALL_SETTINGS.max_inflight_chunks


def test_new_client_with_old_receivers(tmp_path: Path) -> None:
    """Mixed versions: two receivers from before (one chunk per stream, no ``next_chunk``)
    and two new ones. The upload succeeds without a failover; the old ones get a stream
    per chunk (the client never sends them a second header), the new ones one in all."""
    with contextlib.ExitStack() as stack:
        old = [OneChunkReceiver(ChunkStore(tmp_path / f"old{i}", capacity_bytes=1 << 30))
               for i in range(2)]
        old_addresses = [PeerAddress(f"old{i}", a, a) for i, a in
                         enumerate(stack.enter_context(_serve(s)) for s in old)]
        new = [stack.enter_context(_receiver(tmp_path / f"new{i}")) for i in range(2)]
        events, _ = _upload(tmp_path, [*old_addresses, *(p.config.address() for p, _ in new)])
    assert not events.of_kind("upload.failover")
    stored = [dict(e.fields)["peer"] for e in events.of_kind("upload.stored")]
    for i, servicer in enumerate(old):
        assert servicer.streams == stored.count(f"old{i}") > 0
    for _, metrics in new:
        assert _streams(metrics) == 1


def test_receiver_that_ends_an_offered_stream_costs_no_failover(tmp_path: Path) -> None:
    """A receiver that says ``next_chunk`` but ends the stream after each chunk (as one
    restarted between two chunks does): the header that fails on the reused stream is
    sent again on a new one, and the upload completes with no failover."""
    with contextlib.ExitStack() as stack:
        liars = [OneChunkReceiver(ChunkStore(tmp_path / f"l{i}", capacity_bytes=1 << 30),
                                  offers_more=True) for i in range(4)]
        addresses = [PeerAddress(f"l{i}", a, a) for i, a in
                     enumerate(stack.enter_context(_serve(s)) for s in liars)]
        events, _ = _upload(tmp_path, addresses, chunks=8)
    assert not events.of_kind("upload.failover")
    assert len(events.of_kind("upload.stored")) == 16


def test_pool_reopens_a_stream_the_receiver_idled_out(tmp_path: Path) -> None:
    """A pooled stream the receiver ended for idling (its timeout below the client's idle
    limit): the next chunk to that peer goes on a new stream, without an error."""
    with _receiver(tmp_path / "r", stream_idle_timeout_s=0.3) as (peer, metrics):
        transport = GrpcTransport(rpc_timeout_s=30)
        streams = StoreSessions(transport, SystemClock())
        for pause in (0.0, 1.0):
            time.sleep(pause)
            header, segments = random_chunk(CHUNK)
            session, held = streams.start(peer.config.address(), header)
            assert session.send_round(enumerate(segments)) == []
            streams.done(peer.config.peer_id, session, stored=True)
        streams.close()
        transport.close()
        assert streams.opened == 2 and _streams(metrics) == 2
        assert _idle_ended(metrics, 1)


def test_grpc_session_takes_new_chunks_only_early_in_its_deadline(tmp_path: Path) -> None:
    """A stream's call has one deadline: past REUSE_WITHIN_DEADLINE of it the session is no
    longer reusable, so no chunk starts on a call about to time out."""
    with _receiver(tmp_path / "r") as (peer, _):
        transport = GrpcTransport(rpc_timeout_s=2.0)  # reusable for its first 0.5 s
        session = transport.open_store(peer.config.address())
        header, segments = random_chunk(CHUNK)
        session.start(header)
        assert not session.reusable  # mid-chunk
        assert session.send_round(enumerate(segments)) == []
        assert session.reusable
        time.sleep(0.6)
        assert not session.reusable
        session.close()
        transport.close()


# ---- StoreSessions over the in-memory transport -------------------------------------------

class _Counting:
    """The in-memory transport, counting streams opened and closed."""

    def __init__(self, inner: MemoryTransport) -> None:
        self.inner = inner
        self.opened = 0
        self.closed = 0

    def open_store(self, peer: PeerAddress) -> StoreSession:
        session = self.inner.open_store(peer)
        self.opened += 1
        outer = self

        class Session:
            def __getattr__(self, name: str) -> object:
                return getattr(session, name)

            def close(self) -> None:
                outer.closed += 1
                session.close()

        return Session()  # type: ignore[return-value]

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def _memory(tmp_path: Path) -> tuple[_Counting, PeerAddress, ManualClock]:
    clock = ManualClock()
    inner = MemoryTransport()
    address = inner.add_peer("p0", tmp_path / "p0", clock=clock)
    return _Counting(inner), address, clock


def _store_chunk(streams: StoreSessions, peer: PeerAddress) -> StoreSession:
    header, segments = random_chunk(CHUNK)
    session, held = streams.start(peer, header)
    assert not held.committed
    assert session.send_round(enumerate(segments)) == []
    return session


def test_pool_reuses_and_closes_everything(tmp_path: Path) -> None:
    """Chunk after chunk on one stream; two at once on two; all closed at the end, and one
    handed back after the end is closed at once."""
    transport, peer, clock = _memory(tmp_path)
    streams = StoreSessions(transport, clock)  # type: ignore[arg-type]
    for _ in range(3):
        streams.done(peer.peer_id, _store_chunk(streams, peer), stored=True)
    assert transport.opened == 1
    a, b = _store_chunk(streams, peer), _store_chunk(streams, peer)
    assert transport.opened == 2  # both in use at once
    streams.done(peer.peer_id, a, stored=True)
    streams.done(peer.peer_id, b, stored=True)
    streams.done(peer.peer_id, _store_chunk(streams, peer), stored=True)
    assert transport.opened == 2 and transport.closed == 0
    late = _store_chunk(streams, peer)
    streams.close()
    assert transport.closed == 1  # the idle one
    streams.done(peer.peer_id, late, stored=True)
    assert transport.closed == 2 == transport.opened


def test_pool_never_reuses_a_failed_or_idle_session(tmp_path: Path) -> None:
    """A session whose chunk was not stored is closed, not pooled; one idle longer than
    IDLE_REUSE_S is closed and replaced by a new stream."""
    transport, peer, clock = _memory(tmp_path)
    streams = StoreSessions(transport, clock)  # type: ignore[arg-type]
    header, _ = random_chunk(CHUNK)
    failed, _ = streams.start(peer, header)
    streams.done(peer.peer_id, failed, stored=False)  # e.g. DataLoss, MisbehavingPeer
    assert transport.closed == 1
    streams.done(peer.peer_id, _store_chunk(streams, peer), stored=True)
    assert transport.opened == 2  # the failed one was not reused
    clock.advance_ms(int(IDLE_REUSE_S * 1000) + 1)
    streams.done(peer.peer_id, _store_chunk(streams, peer), stored=True)
    assert transport.opened == 3 and transport.closed == 2
    streams.close()


def test_pool_retries_a_reused_stream_once_then_fails_over(tmp_path: Path) -> None:
    """The peer went away while its stream waited in the pool: the header fails on the
    reused stream, a new stream is tried once, and its PeerUnavailable is the caller's
    (the engine fails over from it as before)."""
    transport, peer, clock = _memory(tmp_path)
    streams = StoreSessions(transport, clock)  # type: ignore[arg-type]
    streams.done(peer.peer_id, _store_chunk(streams, peer), stored=True)
    transport.inner.down.add(peer.peer_id)
    with pytest.raises(PeerUnavailable):
        streams.start(peer, random_chunk(CHUNK)[0])
    assert transport.opened == 1 and transport.closed == 1
    transport.inner.down.discard(peer.peer_id)
    streams.done(peer.peer_id, _store_chunk(streams, peer), stored=True)
    assert transport.opened == 2
    streams.close()


def test_pool_does_not_retry_after_a_hang(tmp_path: Path) -> None:
    """A header that fails on a reused stream only after a long wait (a hung peer, a
    half-open link until the call's deadline) is the peer's failure: no second stream, no
    second wait."""
    transport, peer, clock = _memory(tmp_path)
    streams = StoreSessions(transport, clock)  # type: ignore[arg-type]
    pooled = _store_chunk(streams, peer)

    class Hangs:
        reusable = True

        def start(self, header: ChunkHeader) -> Held:
            clock.advance_ms(int((STALE_FAILS_WITHIN_S + 1) * 1000))
            raise PeerUnavailable("deadline exceeded")

        def close(self) -> None:
            pooled.close()

    streams.done(peer.peer_id, Hangs(), stored=True)  # type: ignore[arg-type]
    with pytest.raises(PeerUnavailable, match="deadline"):
        streams.start(peer, random_chunk(CHUNK)[0])
    assert transport.opened == 1 and transport.closed == 1
    streams.close()


def test_session_without_reusable_carries_one_chunk(tmp_path: Path) -> None:
    """A StoreSession without ``reusable`` (a test double, another transport) is used for
    one chunk and closed, as before."""

    class Plain:
        def __init__(self, inner: StoreSession) -> None:
            self.inner = inner

        def start(self, header: ChunkHeader) -> Held:
            return self.inner.start(header)

        def send_round(self, segments: object) -> list[int]:
            return self.inner.send_round(segments)  # type: ignore[arg-type]

        def close(self) -> None:
            self.inner.close()

    inner, peer, clock = _memory(tmp_path)

    class PlainTransport:
        opened = 0

        def open_store(self, address: PeerAddress) -> StoreSession:
            PlainTransport.opened += 1
            return Plain(inner.open_store(address))

    streams = StoreSessions(PlainTransport(), clock)  # type: ignore[arg-type]
    for _ in range(3):
        session = _store_chunk(streams, peer)
        assert not reusable(session)
        streams.done(peer.peer_id, session, stored=True)
    assert PlainTransport.opened == 3
    streams.close()


def test_busy_receiver_refuses_a_second_stream_while_one_is_reused(tmp_path: Path) -> None:
    """With one stream allowed per caller, the pooled stream carries every chunk while a
    second stream to that receiver is PeerBusy, as any second stream always was."""
    with _receiver(tmp_path / "r", max_streams_per_peer=1) as (peer, metrics):
        transport = GrpcTransport(rpc_timeout_s=30)
        streams = StoreSessions(transport, SystemClock())
        address = peer.config.address()
        held_open = None
        for _ in range(3):
            header, segments = random_chunk(CHUNK)
            session, _ = streams.start(address, header)
            assert session.send_round(enumerate(segments)) == []
            streams.done(peer.config.peer_id, session, stored=True)
            held_open = session
        assert held_open is not None and reusable(held_open)
        other = transport.open_store(address)
        with pytest.raises(PeerBusy):
            other.start(random_chunk(CHUNK)[0])
        other.close()
        streams.close()
        transport.close()
        assert streams.opened == 1
