"""Raw StoreChunk streams for tests: one that sends a chunk header and then waits (stream
admission), and one driven message by message (the stream protocol)."""

from __future__ import annotations

import queue
from collections.abc import Iterable, Iterator

import grpc

from mydrive.formats.chunkheader import ChunkHeader
from mydrive.transport.codec import header_to_pb
from mydrive.transport.wire import mydrive_pb2 as pb
from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc
from tests.strategies import random_chunk


class HeaderOnlyUpload:
    """One StoreChunk call on ``channel`` (with request ``metadata``) that sends the header
    of a random chunk of ``size`` bytes and nothing more until closed."""

    def __init__(self, channel: grpc.Channel, *, size: int = 4096,
                 metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self._outbox: queue.Queue[pb.StoreMsg | None] = queue.Queue()
        self._outbox.put(pb.StoreMsg(header=header_to_pb(random_chunk(size)[0])))
        self.call = pb_grpc.ReceiverStub(channel).StoreChunk(self._requests(), timeout=30,
                                                             metadata=metadata)

    def _requests(self) -> Iterator[pb.StoreMsg]:
        while (item := self._outbox.get()) is not None:
            yield item

    def admitted(self) -> bool:
        """True once the header is answered; False if the stream was refused as busy
        (RESOURCE_EXHAUSTED); any other failure raises."""
        try:
            return next(self.call).WhichOneof("ack") == "held"
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                return False
            raise

    def close(self) -> None:
        self._outbox.put(None)
        self.call.cancel()


class StepStream:
    """One raw StoreChunk call driven message by message, as any client (an old one, a
    hostile one) may: ``send`` messages, read the next ``ack``, ``end`` the requests."""

    def __init__(self, channel: grpc.Channel, *, timeout: float = 30) -> None:
        self._outbox: queue.Queue[pb.StoreMsg | None] = queue.Queue()
        self.call = pb_grpc.ReceiverStub(channel).StoreChunk(self._requests(), timeout=timeout)

    def _requests(self) -> Iterator[pb.StoreMsg]:
        while (item := self._outbox.get()) is not None:
            yield item

    def send(self, *messages: pb.StoreMsg) -> None:
        for message in messages:
            self._outbox.put(message)

    def ack(self) -> pb.StoreAck:
        return next(self.call)

    def header(self, header: ChunkHeader) -> pb.StoreAck:
        self.send(pb.StoreMsg(header=header_to_pb(header)))
        return self.ack()

    def round(self, segments: Iterable[tuple[int, bytes]]) -> pb.StoreAck:
        self.send(*(pb.StoreMsg(segment=pb.Segment(index=i, data=d)) for i, d in segments))
        self.send(pb.StoreMsg(round_end=pb.RoundEnd()))
        return self.ack()

    def store(self, header: ChunkHeader, segments: list[bytes]) -> pb.StoreAck:
        """Header and one round of every segment not held; the header's answer."""
        held = self.header(header)
        assert held.WhichOneof("ack") == "held", held
        if not held.held.committed:
            todo = [(i, s) for i, s in enumerate(segments) if i not in set(held.held.indices)]
            assert self.round(todo).WhichOneof("ack") == "committed"
        return held

    def end(self) -> None:
        """Half-close: no more requests."""
        self._outbox.put(None)

    def close(self) -> None:
        self.end()
        self.call.cancel()
