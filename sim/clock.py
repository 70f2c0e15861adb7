"""Virtual time and the timeline of things due to happen (the simulator owns time).

``SimClock`` is a ``mydrive.runtime.clock.Clock``: the engine reads it for signatures and
event stamps, and its ``sleep`` (the download's retry pause) moves virtual time instead of
waiting. The simulated network moves it too, by the time each message would take. Whenever
time moves, every timeline entry that falls due runs first, in (time, order of scheduling)
order, so a fault planned for t = 1.2 s lands between the two segments that straddle it.

Nothing here reads the wall clock or draws randomness: the same calls give the same times.
Held in memory only; a run's clock dies with it.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from dataclasses import dataclass, field

START_MS = 1_700_000_000_000  # virtual epoch: the same in every run
MAX_PENDING = 100_000         # timeline entries waiting at once; more is a sim bug
_NS_PER_MS = 1_000_000
_NS_PER_S = 1_000_000_000


@dataclass(order=True)
class _Due:
    at_ns: int
    order: int
    action: Callable[[], None] = field(compare=False)
    label: str = field(compare=False, default="")
    cancelled: bool = field(compare=False, default=False)

    def cancel(self) -> None:
        """Never run it (it stays queued, skipped, and moves no time when reached)."""
        self.cancelled = True


class SimClock:
    """Virtual nanoseconds since ``START_MS``; ``advance`` runs what falls due on the way."""

    def __init__(self, start_ms: int = START_MS) -> None:
        self._now_ns = start_ms * _NS_PER_MS
        self._due: list[_Due] = []
        self._order = 0
        self._firing = False
        self.frozen = False  # checkers read time but must never move it

    # ---- Clock protocol -----------------------------------------------------------------
    def now_ms(self) -> int:
        return self._now_ns // _NS_PER_MS

    def monotonic_s(self) -> float:
        return self._now_ns / _NS_PER_S

    def sleep(self, seconds: float) -> None:
        """The engine pausing: virtual time moves on, and what falls due meanwhile runs."""
        assert seconds >= 0
        if self.frozen:
            return
        self.advance_ns(round(seconds * _NS_PER_S))

    # ---- the simulator's side -----------------------------------------------------------
    @property
    def now_ns(self) -> int:
        return self._now_ns

    def advance_ms(self, delta_ms: float) -> None:
        self.advance_ns(round(delta_ms * _NS_PER_MS))

    def advance_ns(self, delta_ns: int) -> None:
        """Move time forward by ``delta_ns``, running every entry due on the way."""
        assert delta_ns >= 0
        assert not self._firing, "a timeline action may not move time"
        if self.frozen:
            return
        self.run_until_ns(self._now_ns + delta_ns)

    def run_until_ns(self, target_ns: int) -> None:
        while self._due and self._due[0].at_ns <= target_ns:
            due = heapq.heappop(self._due)
            if due.cancelled:
                continue
            self._now_ns = max(self._now_ns, due.at_ns)
            self._fire(due)
        self._now_ns = max(self._now_ns, target_ns)

    def _fire(self, due: _Due) -> None:
        # An action may schedule more entries; it may not move time itself (re-entrance
        # would reorder the timeline), which the assertion in ``advance_ns`` enforces.
        self._firing = True
        try:
            due.action()
        finally:
            self._firing = False

    def at_ms(self, delay_ms: float, action: Callable[[], None], label: str = "") -> _Due:
        """Run ``action`` ``delay_ms`` from now (0: at the next movement of time); the
        returned entry can be cancelled."""
        assert delay_ms >= 0
        assert len(self._due) < MAX_PENDING, "timeline overflow: a fault loop in the sim"
        self._order += 1
        due = _Due(self._now_ns + round(delay_ms * _NS_PER_MS), self._order, action, label)
        heapq.heappush(self._due, due)
        return due

    def _drop_cancelled(self) -> None:
        while self._due and self._due[0].cancelled:
            heapq.heappop(self._due)

    def next_due_ns(self) -> int | None:
        self._drop_cancelled()
        return self._due[0].at_ns if self._due else None

    def pending(self) -> int:
        return sum(1 for d in self._due if not d.cancelled)

    def run_all(self, *, limit_ns: int) -> None:
        """Run every pending entry (they may schedule more) up to ``limit_ns`` from now."""
        end = self._now_ns + limit_ns
        while (due := self.next_due_ns()) is not None and due <= end:
            self.run_until_ns(due)
