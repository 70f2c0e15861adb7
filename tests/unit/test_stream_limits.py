"""StoreChunk stream admission and idle expiry (mydrive.storage.stream_limits), manual clock."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mydrive.errors import BadRequest, PeerBusy, TooLarge
from mydrive.storage.caller import address_of
from mydrive.storage.stream_limits import StreamLimits, StreamLimitSettings
from mydrive.testing.clock import ManualClock


def _limits(per_peer: int = 2, total: int = 3, idle_timeout_s: float = 30.0
            ) -> tuple[StreamLimits, ManualClock]:
    clock = ManualClock()
    settings = StreamLimitSettings(per_peer=per_peer, total=total, idle_timeout_s=idle_timeout_s)
    return StreamLimits(settings, clock, sweep=False), clock


def _nothing() -> None:
    pass


def test_per_peer_and_total_limits() -> None:
    """A peer gets ``per_peer`` streams, all peers ``total``; a released slot is reusable;
    PeerBusy is a TooLarge (RESOURCE_EXHAUSTED: the uploader fails over)."""
    limits, _ = _limits()
    a1, _a2 = limits.admit("a", _nothing), limits.admit("a", _nothing)
    with pytest.raises(PeerBusy, match="from yours"):
        limits.admit("a", _nothing)
    limits.admit("b", _nothing)
    with pytest.raises(PeerBusy, match=r"runs 3 uploads \(at most 3\)"):
        limits.admit("c", _nothing)
    assert issubclass(PeerBusy, TooLarge)
    a1.release()
    a1.release()  # twice is once
    assert limits.active() == 2 and limits.active("a") == 1
    limits.admit("c", _nothing)
    assert limits.active() == 3


def test_settings_must_leave_workers_free() -> None:
    StreamLimitSettings(per_peer=8, total=24).validate(workers=32)
    for bad in (StreamLimitSettings(per_peer=8, total=32), StreamLimitSettings(per_peer=0),
                StreamLimitSettings(per_peer=9, total=8), StreamLimitSettings(idle_timeout_s=0)):
        with pytest.raises(BadRequest):
            bad.validate(workers=32)


def _sender(clock: ManualClock, limits: StreamLimits, waits_s: list[float]) -> Iterator[float]:
    """A sender whose next message takes ``waits_s[i]`` to arrive; the sweeper runs meanwhile."""
    for wait in waits_s:
        clock.advance_ms(int(wait * 1000))
        limits.expire_idle()
        yield wait


def test_idle_is_time_spent_waiting_for_the_sender() -> None:
    """Only waiting for the next message counts: a stream is ended (``on_idle``) once it
    waited longer than the timeout, never for time the receiver itself spent working."""
    limits, clock = _limits(idle_timeout_s=30)
    ended: list[str] = []
    ticket = limits.admit("a", lambda: ended.append("a"))
    for _ in ticket.messages(_sender(clock, limits, [10, 29.9, 0])):
        clock.advance_ms(120_000)  # the receiver works (verifies, commits) for 2 minutes
        assert limits.expire_idle() == 0
    assert ended == [] and not ticket.expired
    slow = limits.admit("b", lambda: ended.append("b"))
    received = list(slow.messages(_sender(clock, limits, [5, 30.5, 1])))
    assert ended == ["b"] and slow.expired and received == [5, 30.5, 1]
    assert limits.expire_idle() == 0  # ended once
    slow.release()
    assert limits.active() == 1


def test_caller_address_drops_the_port() -> None:
    assert address_of("ipv4:127.0.0.2:41234") == "ipv4:127.0.0.2"
    assert address_of("ipv6:[::1]:5000") == "ipv6:[::1]"
    assert address_of("unix:/tmp/s") == "unix:/tmp/s"
