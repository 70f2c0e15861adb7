"""gRPC Receiver servicer: translates StoreChunk/ChunkStatus to mydrive.storage.receiver.

Each StoreChunk stream is admitted by mydrive.storage.stream_limits under its caller's name
(mydrive.storage.caller) before it reads anything, and ended if it idles, between two of its
chunks as well as within one. A stream carries one chunk after another (docs/protocol.md):
the sender's next header may follow a chunk's Committed answer, or its header answered
"held, committed", while the receiver said it takes a next chunk (``next_chunk``).
"""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from mydrive.errors import BadRequest, MydriveError
from mydrive.runtime.clock import SystemClock
from mydrive.runtime.metrics import Metrics
from mydrive.storage.caller import CallerIdentity
from mydrive.storage.chunkstore import ChunkStore
from mydrive.storage.deleter import ChunkDeleter
from mydrive.storage.receiver import ReceiverSession
from mydrive.storage.stream_limits import StreamLimits, StreamLimitSettings
from mydrive.transport.codec import header_from_pb
from mydrive.transport.signed_delete import SignedDelete
from mydrive.transport.status import abort
from mydrive.transport.wire import mydrive_pb2 as pb
from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc


class ReceiverServicer(pb_grpc.ReceiverServicer):
    def __init__(self, store: ChunkStore, metrics: Metrics, *,
                 deleter: ChunkDeleter | None = None, limits: StreamLimits | None = None,
                 identify: CallerIdentity | None = None) -> None:
        self.store = store
        self.metrics = metrics
        self.deleter = deleter
        self.limits = limits or StreamLimits(StreamLimitSettings(), SystemClock())
        self.identify = identify or CallerIdentity()

    def StoreChunk(self, request_iterator: Iterator[pb.StoreMsg],
                   context: grpc.ServicerContext) -> Iterator[pb.StoreAck]:
        try:
            ticket = self.limits.admit(self.identify(context), on_idle=context.cancel)
        except MydriveError as exc:
            self.metrics.inc("receiver_streams_refused_total")
            abort(context, exc)
        self.metrics.inc("receiver_streams_total")
        session = ReceiverSession(self.store, self.metrics)
        request_iterator = ticket.messages(request_iterator)
        try:
            first = next(request_iterator, None)
            if first is None or first.WhichOneof("msg") != "header":
                raise BadRequest("the first StoreChunk message must be the chunk header")
            msg: pb.StoreMsg | None = first
            # One chunk after another: each header is answered with what is held, and
            # whether the stream takes a next chunk once this one is committed; the sender
            # then ends the stream or sends the next header (ReceiverSession checks order).
            while msg is not None:
                kind = msg.WhichOneof("msg")
                if kind == "header":
                    held = session.start(header_from_pb(msg.header))
                    more = session.takes_next_chunk
                    yield pb.StoreAck(held=pb.SegmentsHeld(indices=sorted(held.indices),
                                                           committed=held.committed,
                                                           next_chunk=more))
                    if held.committed and not more:
                        return  # re-sending a committed chunk is a no-op
                elif kind == "segment":
                    session.segment(msg.segment.index, bytes(msg.segment.data))
                elif kind == "round_end":
                    bad = session.end_round()
                    if bad:
                        yield pb.StoreAck(bad=pb.BadSegments(indices=bad))
                    else:
                        yield pb.StoreAck(committed=pb.Committed())
                        if not session.takes_next_chunk:
                            return
                else:
                    raise BadRequest(f"unexpected StoreChunk message {kind!r}")
                msg = next(request_iterator, None)
        except MydriveError as exc:
            abort(context, exc)
        finally:
            if ticket.expired:
                self.metrics.inc("receiver_streams_idle_ended_total")
            ticket.release()
            session.close()

    def ChunkStatus(self, request: pb.ChunkRef, context: grpc.ServicerContext) -> pb.SegmentsHeld:
        chunk_id = bytes(request.chunk_id)
        if self.store.has(chunk_id):
            try:
                count = self.store.header(chunk_id).segment_count
            except MydriveError as exc:
                abort(context, exc)
            return pb.SegmentsHeld(indices=list(range(count)), committed=True)
        return pb.SegmentsHeld(committed=False)

    def DeleteChunks(self, request: pb.SignedDelete,
                     context: grpc.ServicerContext) -> pb.DeleteReply:
        try:
            if self.deleter is None:
                raise BadRequest("this receiver does not accept deletes")
            outcome = self.deleter.delete(SignedDelete(request=bytes(request.request),
                                                       signature=bytes(request.signature)))
        except MydriveError as exc:
            abort(context, exc)
        return pb.DeleteReply(removed=list(outcome.removed), absent=list(outcome.absent))
