"""The gRPC implementation of mydrive.transport.Transport.

With TLS every call goes over mutual TLS to the target peer's nginx, and the channel is
pinned to the peer it means to reach: the server's certificate must be issued by the network
CA *and* name ``<peer id>.peer.mydrive`` (``ssl_target_name_override``). A peer's id is its
certificate key's (mydrive.formats.peerdoc), so a machine answering at a peer's address
with any other certificate fails the handshake: PeerUnavailable, and the engine fails over.
A peer whose certificate the network CA revoked (``revoked``, the peer's verified list) is
never dialled: PeerUnavailable before any byte goes out, so it is failed over, never used.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

import grpc

from mydrive.errors import BadRequest, MydriveError, PeerUnavailable
from mydrive.formats.chunkheader import MAX_SEGMENT_SIZE_BYTES, ChunkHeader
from mydrive.formats.peerdoc import tls_name
from mydrive.transport.base import REUSE_WITHIN_DEADLINE, Held, PeerAddress
from mydrive.transport.codec import header_to_pb
from mydrive.transport.segment_frames import (
    ROUND_END_MESSAGE,
    as_is,
    segment_from_message,
    segment_message,
)
from mydrive.transport.signed_delete import DeleteOutcome, SignedDelete
from mydrive.transport.signed_fetch import SignedFetch
from mydrive.transport.status import error_from_rpc
from mydrive.transport.wire import mydrive_pb2 as pb
from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc

# One segment plus framing; anything larger is refused by gRPC itself (RESOURCE_EXHAUSTED).
MAX_MESSAGE_BYTES = MAX_SEGMENT_SIZE_BYTES + 64 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_retries", 0),  # failover is the engine's job, not the channel's
]
STORE_CHUNK_METHOD = "/mydrive.v1.Receiver/StoreChunk"
FETCH_CHUNK_METHOD = "/mydrive.v1.Sender/FetchChunk"


class GrpcTransport:
    def __init__(self, *, rpc_timeout_s: float = 120.0,
                 tls: tuple[bytes, bytes, bytes] | None = None,
                 revoked: Callable[[str], bool] | None = None) -> None:
        """``tls`` = (network CA certificate, own key, own certificate), PEM: every call then
        goes over mutual TLS to the target peer's nginx, pinned to that peer's id.
        ``revoked(peer id)``: True for a peer whose certificate key the CA revoked (the pin
        makes the server's certificate name that id, and an id is its key's)."""
        self.rpc_timeout_s = rpc_timeout_s
        self._revoked = revoked or (lambda peer_id: False)
        self._credentials = None
        if tls is not None:
            ca_pem, key_pem, cert_pem = tls
            self._credentials = grpc.ssl_channel_credentials(
                root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem)
        # One channel per (address, peer id): with TLS each is pinned to its peer's name.
        self._channels: dict[tuple[str, str], grpc.Channel] = {}
        self._lock = threading.Lock()

    def _channel(self, address: str, peer_id: str) -> grpc.Channel:
        if self._revoked(peer_id):
            raise PeerUnavailable(f"peer {peer_id}: its certificate is revoked by the network "
                                  f"CA; not contacted")
        key = (address, peer_id)
        with self._lock:
            channel = self._channels.get(key)
            if channel is None:
                if self._credentials is not None:
                    pinned = [*CHANNEL_OPTIONS,
                              ("grpc.ssl_target_name_override", tls_name(peer_id))]
                    channel = grpc.secure_channel(address, self._credentials, options=pinned)
                else:
                    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
                self._channels[key] = channel
            return channel

    def _failed(self, address: str, exc: grpc.RpcError, peer_id: str) -> MydriveError:
        """Map the error; after UNAVAILABLE forget the channel. A channel that failed to
        connect waits out gRPC's reconnect backoff (seconds, growing to minutes) and fails
        every call meanwhile, even once the peer is back; a fresh channel dials at once.
        The old one is not closed: other threads may still be using it."""
        if isinstance(exc, grpc.Call) and exc.code() == grpc.StatusCode.UNAVAILABLE:
            with self._lock:
                self._channels.pop((address, peer_id), None)
        return error_from_rpc(exc, peer_id)

    def open_store(self, peer: PeerAddress) -> _GrpcStoreSession:
        # Requests go out as framed bytes (segment_frames), so not through the stub's serializer.
        store_chunk = self._channel(peer.receiver_address, peer.peer_id).stream_stream(
            STORE_CHUNK_METHOD, request_serializer=as_is,
            response_deserializer=pb.StoreAck.FromString)
        return _GrpcStoreSession(store_chunk, peer, self.rpc_timeout_s,
                                 on_error=lambda exc: self._failed(peer.receiver_address, exc,
                                                                   peer.peer_id))

    def chunk_status(self, peer: PeerAddress, chunk_id: bytes, *,
                     timeout_s: float | None = None) -> Held:
        stub = pb_grpc.ReceiverStub(self._channel(peer.receiver_address, peer.peer_id))
        try:
            reply = stub.ChunkStatus(pb.ChunkRef(chunk_id=chunk_id),
                                     timeout=timeout_s or self.rpc_timeout_s)
        except grpc.RpcError as exc:
            raise self._failed(peer.receiver_address, exc, peer.peer_id) from None
        return Held(indices=frozenset(reply.indices), committed=reply.committed)

    def fetch(self, peer: PeerAddress, signed: SignedFetch
              ) -> Iterator[tuple[int, bytes | memoryview]]:
        # Segments are read by segment_frames: the data is a view of gRPC's message, uncopied.
        fetch_chunk = self._channel(peer.sender_address, peer.peer_id).unary_stream(
            FETCH_CHUNK_METHOD, request_serializer=pb.SignedFetch.SerializeToString,
            response_deserializer=segment_from_message)
        request = pb.SignedFetch(request=signed.request, signature=signed.signature,
                                 delegation=signed.delegation)
        try:
            yield from fetch_chunk(request, timeout=self.rpc_timeout_s)
        except grpc.RpcError as exc:
            raise self._failed(peer.sender_address, exc, peer.peer_id) from None

    def delete_chunks(self, peer: PeerAddress, signed: SignedDelete) -> DeleteOutcome:
        stub = pb_grpc.ReceiverStub(self._channel(peer.receiver_address, peer.peer_id))
        request = pb.SignedDelete(request=signed.request, signature=signed.signature)
        try:
            reply = stub.DeleteChunks(request, timeout=self.rpc_timeout_s)
        except grpc.RpcError as exc:
            raise self._failed(peer.receiver_address, exc, peer.peer_id) from None
        return DeleteOutcome(removed=tuple(bytes(c) for c in reply.removed),
                             absent=tuple(bytes(c) for c in reply.absent))

    def close(self) -> None:
        with self._lock:
            for channel in self._channels.values():
                channel.close()
            self._channels.clear()


_END = object()


class _GrpcStoreSession:
    """A bidirectional StoreChunk call driven step by step (header, then rounds), for one
    chunk or, where the receiver offers it (``next_chunk``), one chunk after another."""

    def __init__(self, store_chunk: grpc.StreamStreamMultiCallable[bytes, pb.StoreAck],
                 peer: PeerAddress,
                 timeout_s: float,
                 on_error: Callable[[grpc.RpcError], MydriveError]) -> None:
        self.peer = peer
        self._on_error = on_error
        # One hand-off per round, not per segment: gRPC's sync API consumes the requests on
        # a thread of its own, and every queue hand-off wakes it (profiled: docs/benchmarks.md).
        self._outbox: queue.Queue[object] = queue.Queue()
        # New chunks only early in the call: its one deadline must leave each chunk enough.
        self._reuse_until = time.monotonic() + timeout_s * REUSE_WITHIN_DEADLINE
        self._next_chunk = False  # the receiver takes another header after this chunk
        self._stored = False      # the current chunk is committed (or was held committed)
        self._failed = False
        self._call = store_chunk(self._requests(), timeout=timeout_s)
        self._acks: Iterator[pb.StoreAck] = iter(self._call)

    @property
    def reusable(self) -> bool:
        return (self._stored and self._next_chunk and not self._failed
                and time.monotonic() < self._reuse_until)

    def _requests(self) -> Iterator[bytes]:
        while True:
            item = self._outbox.get()
            if item is _END:
                return
            assert isinstance(item, deque)
            while item:  # popped, so a segment's bytes go as soon as gRPC has taken them
                message = item.popleft()
                # A segment is framed (its one copy) only when gRPC asks for it: a round
                # holds views of the chunk's buffer, not a framed copy of the whole chunk.
                yield message if isinstance(message, bytes) else segment_message(*message)

    def _next_ack(self) -> pb.StoreAck:
        try:
            ack = next(self._acks)
        except StopIteration:
            self._failed = True
            raise BadRequest(f"peer {self.peer.peer_id} ended the upload early") from None
        except grpc.RpcError as exc:
            self._failed = True
            raise self._on_error(exc) from None
        return ack

    def start(self, header: ChunkHeader) -> Held:
        self._stored = False
        self._outbox.put(deque([pb.StoreMsg(header=header_to_pb(header)).SerializeToString()]))
        ack = self._next_ack()
        if ack.WhichOneof("ack") != "held":
            self._failed = True
            raise BadRequest(f"peer {self.peer.peer_id} answered the header with {ack}")
        self._next_chunk = ack.held.next_chunk
        self._stored = ack.held.committed
        return Held(indices=frozenset(ack.held.indices), committed=ack.held.committed)

    def send_round(self, segments: Iterable[tuple[int, bytes | memoryview]]) -> list[int]:
        # The whole round goes to gRPC's request thread in one hand-off (not one per
        # segment); each segment is framed there as it is sent (_requests). The data may be
        # views of the chunk's buffer: its owner reuses the buffer only after this chunk's
        # last round returned, and an acknowledged round was sent whole.
        try:
            round_: deque[bytes | tuple[int, bytes | memoryview]] = deque(segments)
        except BaseException:
            self._failed = True  # the round was never sent: the stream is mid-chunk
            raise
        round_.append(ROUND_END_MESSAGE)
        self._outbox.put(round_)
        try:
            ack = self._next_ack()
        except BaseException:
            round_.clear()  # a failed call sends nothing more, so no view outlives the round
            raise
        kind = ack.WhichOneof("ack")
        if kind == "committed":
            self._stored = True
            return []
        if kind == "bad":
            if not ack.bad.indices:
                self._failed = True
                raise BadRequest(f"peer {self.peer.peer_id} reported an empty bad set")
            return list(ack.bad.indices)
        self._failed = True
        raise BadRequest(f"peer {self.peer.peer_id} sent an unexpected answer {kind!r}")

    def close(self) -> None:
        self._failed = True
        self._outbox.put(_END)
        self._call.cancel()
