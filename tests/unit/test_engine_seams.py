"""The seams the engine is handed (runtime/ and their test doubles in testing/) behave as the
engine and a simulator rely on."""

from __future__ import annotations

import json
import threading

import pytest

from mydrive.runtime.clock import SystemClock
from mydrive.runtime.events import NO_EVENTS, ClockedEvents, EventLog
from mydrive.runtime.executor import inline_executor, thread_pool
from mydrive.runtime.randomness import SYSTEM_RANDOMNESS
from mydrive.testing.clock import ManualClock
from mydrive.testing.randomness import SeededRandomness


def test_manual_clock_sleep_moves_virtual_time_at_once() -> None:
    """ManualClock.sleep returns without waiting and moves both readings by the duration."""
    clock = ManualClock(start_ms=1_000)
    wall = SystemClock()
    started = wall.monotonic_s()
    clock.sleep(3600.25)
    assert wall.monotonic_s() - started < 1.0
    assert clock.now_ms() == 1_000 + 3_600_250
    assert clock.monotonic_s() == pytest.approx(3601.25)
    clock.advance_ms(5)
    assert clock.now_ms() == 1_000 + 3_600_255


def test_system_clock_sleep_waits() -> None:
    """SystemClock.sleep really waits (the product's retry pause)."""
    clock = SystemClock()
    started = clock.monotonic_s()
    clock.sleep(0.05)
    assert clock.monotonic_s() - started >= 0.04


def test_seeded_randomness_one_seed_one_stream() -> None:
    """One seed gives the same bytes in the same order; another seed other bytes."""
    a, b, c = SeededRandomness(7), SeededRandomness(7), SeededRandomness(8)
    assert [a.random_bytes(16) for _ in range(3)] == [b.random_bytes(16) for _ in range(3)]
    assert SeededRandomness(7).random_bytes(32) != c.random_bytes(32)
    assert len(SYSTEM_RANDOMNESS.random_bytes(24)) == 24
    assert SYSTEM_RANDOMNESS.random_bytes(16) != SYSTEM_RANDOMNESS.random_bytes(16)


def test_inline_executor_runs_in_submit_order_in_the_caller() -> None:
    """Tasks run inside submit, in the caller's thread; an Exception lands in the future."""
    order: list[int] = []
    with inline_executor(max_workers=8, name="t") as pool:
        futures = [pool.submit(lambda i=i: order.append(i) or threading.get_ident())
                   for i in range(5)]
        failed = pool.submit(lambda: 1 // 0)
    assert order == [0, 1, 2, 3, 4]
    assert all(f.done() and f.result() == threading.get_ident() for f in futures)
    assert isinstance(failed.exception(), ZeroDivisionError)


def test_inline_executor_lets_keyboard_interrupt_through() -> None:
    """A KeyboardInterrupt in a task reaches the caller at once, as with no executor at all."""

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt), inline_executor(max_workers=1, name="t") as pool:
        pool.submit(interrupted)


def test_thread_pool_runs_on_named_threads() -> None:
    """The product's executor runs tasks on threads named after the transfer."""
    with thread_pool(max_workers=2, name="upload") as pool:
        name = pool.submit(lambda: threading.current_thread().name).result()
    assert name.startswith("upload")


def test_event_log_renders_stable_json_lines_and_is_bounded() -> None:
    """Equal events give equal bytes (keys sorted, tuples as lists); past max_events, events
    are counted as dropped, not kept."""
    clock = ManualClock(start_ms=5)
    logs = [EventLog(max_events=3), EventLog(max_events=3)]
    for log in logs:
        note = ClockedEvents(log, clock)
        note("upload.placed", replicas=("p2", "p1"), chunk=0)
        note("upload.sent", chunk=0, segment=1, peer="p2", attempt=0)
        note("download.pause", chunk=0, pause_ms=1000)
        note("upload.done", file_id="ab")
    first, second = logs
    assert first.to_jsonl() == second.to_jsonl()
    assert first.dropped == 1 and len(first.events) == 3
    lines = first.to_jsonl().decode().splitlines()
    assert json.loads(lines[0]) == {"seq": 0, "t_ms": 5, "kind": "upload.placed",
                                    "chunk": 0, "replicas": ["p2", "p1"]}
    assert lines[0] == json.dumps(json.loads(lines[0]), sort_keys=True, separators=(",", ":"))
    assert [e.kind for e in first.of_kind("upload.sent")] == ["upload.sent"]


def test_no_events_reads_no_clock() -> None:
    """With the product's NO_EVENTS the engine does not even read the clock per event."""

    class Untouchable(ManualClock):
        def now_ms(self) -> int:
            raise AssertionError("the clock was read for an event nobody records")

    ClockedEvents(NO_EVENTS, Untouchable())("upload.sent", chunk=0)
