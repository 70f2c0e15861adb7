"""An upload hands its segments over as views of the chunk's buffer, and the gRPC session
frames each one (its one copy) only as gRPC sends it.

Framing a whole round at once kept a framed copy of the chunk per replica alive until the
round was sent: with 8 MiB chunks, 4 in flight and R = 2 that is 64 MiB more, and the
benchmark's uploading sender peaked at 264 MiB, over the 250 MiB target
(docs/benchmarks.md, "Per-chunk costs").
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path

import pytest

from mydrive.engine.upload import PeerInfo, upload_file
from mydrive.runtime.clock import SystemClock
from mydrive.runtime.executor import inline_executor
from mydrive.runtime.faults import NoFaults
from mydrive.testing.memory_transport import MemoryTransport
from mydrive.transport import grpc_client
from tests.strategies import SMALL_SETTINGS, fast_user, random_file
from tests.unit.test_store_stream_reuse import _receiver, _upload


class _RecordingFaults(NoFaults):
    def __init__(self) -> None:
        self.kinds: set[type] = set()

    def upload_segment(self, data: bytes | memoryview, **kwargs: object) -> bytes | memoryview:
        self.kinds.add(type(data))
        return data


def test_upload_hands_segments_over_as_views(tmp_path: Path) -> None:
    transport = MemoryTransport()
    peers = [PeerInfo(address=transport.add_peer(f"p{i}", tmp_path / f"p{i}",
                                                 clock=SystemClock()), capacity_bytes=2**40)
             for i in range(3)]
    faults = _RecordingFaults()
    src = random_file(tmp_path / "src", 5 * SMALL_SETTINGS.chunk_size_bytes)
    upload_file(src, keys=fast_user(), owner_peer_id="owner", peers=peers,
                settings=SMALL_SETTINGS, transport=transport, clock=SystemClock(),
                faults=faults)
    assert faults.kinds == {memoryview}  # no copy of a segment before the transport's


def test_grpc_session_frames_each_segment_on_grpcs_request_thread(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine runs inline (this thread): every segment is framed on gRPC's thread, as it
    is sent, never on the engine's thread when the round is handed over."""
    framed_on: set[threading.Thread] = set()
    real = grpc_client.segment_message

    def spy(index: int, data: bytes | memoryview) -> bytes:
        framed_on.add(threading.current_thread())
        return real(index, data)

    monkeypatch.setattr(grpc_client, "segment_message", spy)
    with contextlib.ExitStack() as stack:
        receivers = [stack.enter_context(_receiver(tmp_path / f"p{i}")) for i in range(3)]
        _upload(tmp_path, [p.config.address() for p, _ in receivers], chunks=6,
                executor=inline_executor)
    assert framed_on and threading.current_thread() not in framed_on
