"""StoreChunk requests framed by hand: a segment message costs one copy of its data.

Building ``pb.StoreMsg(segment=pb.Segment(...))`` and serializing it copies the segment twice
and runs protobuf's machinery for every 256 KiB; the framing of this one message shape is
fixed by proto/mydrive.proto (StoreMsg.segment = 2, Segment.index = 1, Segment.data = 2), so it
is written out here. ``tests/unit/test_store_frames.py`` holds it byte-equal to protobuf's own
serialization.
"""

from __future__ import annotations

from mydrive.transport.wire import mydrive_pb2 as pb

_INDEX_TAG = b"\x08"    # Segment.index: field 1, varint
_DATA_TAG = b"\x12"     # Segment.data: field 2, length-delimited
_SEGMENT_TAG = b"\x12"  # StoreMsg.segment: field 2, length-delimited

ROUND_END_MESSAGE = pb.StoreMsg(round_end=pb.RoundEnd()).SerializeToString()


def _varint(value: int) -> bytes:
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def segment_message(index: int, data: bytes | memoryview) -> bytes:
    """The serialized ``StoreMsg{segment: Segment{index, data}}``, exactly as protobuf
    writes it (proto3 leaves a zero index and empty data out)."""
    assert 0 <= index < 2**32
    index_field = _INDEX_TAG + _varint(index) if index else b""
    data_head = _DATA_TAG + _varint(len(data)) if len(data) else b""
    body_length = len(index_field) + len(data_head) + len(data)
    return b"".join((_SEGMENT_TAG, _varint(body_length), index_field, data_head, data))


def as_is(message: bytes) -> bytes:
    """The request serializer for messages framed already."""
    return message
