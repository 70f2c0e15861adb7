"""Hand-framed StoreChunk messages are byte-equal to protobuf's serialization."""

from __future__ import annotations

import pytest

from mydrive.transport.store_frames import ROUND_END_MESSAGE, segment_message
from mydrive.transport.wire import mydrive_pb2 as pb


@pytest.mark.parametrize("index", [0, 1, 127, 128, 300, 4095, 2**32 - 1])
@pytest.mark.parametrize("length", [0, 1, 127, 128, 16 * 1024, 256 * 1024 + 3])
def test_segment_message_is_protobufs_own(index: int, length: int) -> None:
    data = bytes(range(256)) * (length // 256) + bytes(length % 256)
    expected = pb.StoreMsg(segment=pb.Segment(index=index, data=data)).SerializeToString()
    framed = segment_message(index, memoryview(data))
    assert framed == expected
    parsed = pb.StoreMsg.FromString(framed)
    assert parsed.WhichOneof("msg") == "segment"
    assert (parsed.segment.index, parsed.segment.data) == (index, data)


def test_round_end_message() -> None:
    assert pb.StoreMsg.FromString(ROUND_END_MESSAGE).WhichOneof("msg") == "round_end"
