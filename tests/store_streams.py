"""StoreChunk streams that send a chunk header and then wait: for tests of stream admission."""

from __future__ import annotations

import queue
from collections.abc import Iterator

import grpc

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
