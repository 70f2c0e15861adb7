"""Time and sleeping, handed in: the product uses ``SystemClock``; tests and the simulator
hand in ``mydrive.testing.clock.ManualClock``, whose ``sleep`` moves virtual time instead of
waiting (like trio's MockClock jumping when everything sleeps). Nothing is kept: a crash
leaves nothing behind.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def now_ms(self) -> int:
        """Wall-clock milliseconds since the Unix epoch (signed requests, timestamps)."""
        ...

    def monotonic_s(self) -> float:
        """Monotonic seconds (timeouts, rates)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Pause the calling thread for ``seconds`` of this clock's time (retry pauses)."""
        ...


class SystemClock:
    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic_s(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        time.sleep(seconds)
