"""A clock that moves only when told to, or when the code sleeps (tests, the simulator).

Like trio's MockClock: ``sleep`` returns at once and moves virtual time forward by the
duration, so a retry pause costs no wall time and still shows in timestamps.
"""

from __future__ import annotations

import threading

_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


class ManualClock:
    """``mydrive.runtime.clock.Clock`` in virtual time: only ``advance_ms`` and ``sleep``
    move it."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ns = start_ms * _NS_PER_MS
        self._lock = threading.Lock()

    def now_ms(self) -> int:
        with self._lock:
            return self._now_ns // _NS_PER_MS

    def monotonic_s(self) -> float:
        with self._lock:
            return self._now_ns / _NS_PER_S

    def advance_ms(self, delta_ms: int) -> None:
        assert delta_ms >= 0
        with self._lock:
            self._now_ns += delta_ms * _NS_PER_MS

    def sleep(self, seconds: float) -> None:
        """Return at once, ``seconds`` later in virtual time."""
        assert seconds >= 0
        with self._lock:
            self._now_ns += round(seconds * _NS_PER_S)
