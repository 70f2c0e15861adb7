"""Hand-framed segment messages: byte-equal to protobuf's on the way out, read the same way
as protobuf reads them on the way in."""

from __future__ import annotations

import pytest
from google.protobuf.message import DecodeError

from mydrive.transport.segment_frames import (
    ROUND_END_MESSAGE,
    segment_from_message,
    segment_message,
)
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


@pytest.mark.parametrize("index", [0, 1, 128, 2**32 - 1])
@pytest.mark.parametrize("length", [0, 1, 300, 256 * 1024])
def test_segment_from_message_reads_protobufs_encoding(index: int, length: int) -> None:
    data = bytes(range(256)) * (length // 256) + bytes(length % 256)
    raw = pb.Segment(index=index, data=data).SerializeToString()
    got_index, got_data = segment_from_message(raw)
    assert (got_index, bytes(got_data)) == (index, data)


@pytest.mark.parametrize("raw", [
    b"\x12\x03abc\x08\x05",            # data before index
    b"\x08\x05\x12\x03abc\x12\x01z",   # data twice: the last one counts
    b"\x08\x05\x12\x03abc\x18\x01",    # an unknown field
    b"\x08\x01\x08\x07\x12\x01x",      # index twice
])
def test_segment_from_message_agrees_with_protobuf_on_other_encodings(raw: bytes) -> None:
    expected = pb.Segment.FromString(raw)
    got_index, got_data = segment_from_message(raw)
    assert (got_index, bytes(got_data)) == (expected.index, expected.data)


@pytest.mark.parametrize("raw", [
    b"\x08\x05\x12\x09abc",               # data shorter than its length
    b"\x08\xff\xff\xff\xff\xff\xff",      # a varint that never ends
    b"\x12",                              # a tag and nothing else
])
def test_segment_from_message_refuses_what_protobuf_refuses(raw: bytes) -> None:
    with pytest.raises(DecodeError):
        pb.Segment.FromString(raw)
    with pytest.raises(DecodeError):
        segment_from_message(raw)
