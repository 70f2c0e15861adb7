"""gRPC Sender servicer: translates FetchChunk to mydrive.storage.sender."""

from __future__ import annotations

from collections.abc import Iterator

import grpc

from mydrive.errors import MydriveError
from mydrive.storage.sender import ChunkServer
from mydrive.transport.signed_fetch import SignedFetch
from mydrive.transport.status import abort
from mydrive.transport.wire import mydrive_pb2 as pb
from mydrive.transport.wire import mydrive_pb2_grpc as pb_grpc


class SenderServicer(pb_grpc.SenderServicer):
    def __init__(self, server: ChunkServer) -> None:
        self.server = server

    def FetchChunk(self, request: pb.SignedFetch,
                   context: grpc.ServicerContext) -> Iterator[pb.Segment]:
        try:
            signed = SignedFetch(request=bytes(request.request),
                                 signature=bytes(request.signature),
                                 delegation=bytes(request.delegation))
            for index, data in self.server.fetch(signed):
                yield pb.Segment(index=index, data=data)
        except MydriveError as exc:
            abort(context, exc)
