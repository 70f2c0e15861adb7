"""Segment messages framed and read by hand: a segment costs one copy of its data, not three.

Building ``pb.StoreMsg(segment=pb.Segment(...))`` and serializing it copies the segment twice,
and reading ``pb.Segment.FromString(raw).data`` copies it twice more, for every 256 KiB. These
two message shapes are fixed by proto/mydrive.proto (StoreMsg.segment = 2, Segment.index = 1,
Segment.data = 2), so they are written and read here; anything else a sender sends goes
through protobuf itself. ``tests/unit/test_segment_frames.py`` holds both to protobuf's own
encoding.
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


def _read_varint(raw: bytes, pos: int) -> tuple[int, int] | None:
    """(value, next position) of a varint of at most 5 bytes (a uint32), or None."""
    value = shift = 0
    for i in range(pos, min(pos + 5, len(raw))):
        byte = raw[i]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i + 1
        shift += 7
    return None


def _read_plain_segment(raw: bytes) -> tuple[int, memoryview] | None:
    """The index and data of a Segment message written the way protobuf writes it (index
    first, then data, each at most once), without copying the data; None for any other
    encoding, which the caller leaves to protobuf."""
    index, data, pos = 0, memoryview(b""), 0
    if pos < len(raw) and raw[pos] == _INDEX_TAG[0]:
        got = _read_varint(raw, pos + 1)
        if got is None or got[0] >= 2**32:
            return None
        index, pos = got
    if pos < len(raw) and raw[pos] == _DATA_TAG[0]:
        got = _read_varint(raw, pos + 1)
        if got is None or got[1] + got[0] > len(raw):
            return None
        length, pos = got
        data = memoryview(raw)[pos:pos + length]
        pos += length
    return (index, data) if pos == len(raw) else None


def segment_from_message(raw: bytes) -> tuple[int, bytes | memoryview]:
    """(index, data) of a serialized ``Segment`` from a sender: the FetchChunk response
    deserializer. A message protobuf cannot read raises, as protobuf's own deserializer
    does, and gRPC fails the call."""
    plain = _read_plain_segment(raw)
    if plain is not None:
        return plain
    segment = pb.Segment.FromString(raw)
    return segment.index, segment.data
