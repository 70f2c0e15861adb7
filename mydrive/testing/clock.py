"""A clock that moves only when told to (tests, the simulator)."""

from __future__ import annotations


class ManualClock:
    """A clock that only moves when told to (tests, simulator)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def monotonic_s(self) -> float:
        return self._now_ms / 1000.0

    def advance_ms(self, delta_ms: int) -> None:
        assert delta_ms >= 0
        self._now_ms += delta_ms
