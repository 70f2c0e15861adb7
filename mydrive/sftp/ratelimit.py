"""Login attempts rate-limited per user name and per source address.

Every passphrase or unlock-secret check costs an Argon2id run, so guessing is slow anyway;
this makes it slower and keeps the CPU for real users. In a sliding window of ``window_s``:
  - a user name takes at most ``max_failures_per_user`` failed logins, from anywhere;
  - a source address takes at most ``max_attempts_per_source`` login attempts (good or bad).
Past either limit a login is refused at once, without checking the secret, until the
window slides. A good login does not clear a user's failures (else each of the user's own
logins would reset an attacker's count). The per-user limit lets anyone keep a user's SSH
logins locked while they keep guessing (the usual trade-off); the UI and CLI are not
affected.

Memory is bounded: at most ``max_tracked`` names and addresses are remembered (the oldest
forgotten first), each with at most its limit of timestamps. Nothing is kept on disk: a
restart forgets every count.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque

from mydrive.runtime.clock import Clock

DEFAULT_WINDOW_S = 60.0
DEFAULT_MAX_FAILURES_PER_USER = 5
DEFAULT_MAX_ATTEMPTS_PER_SOURCE = 20
DEFAULT_MAX_TRACKED = 10_000


class _Window:
    """Timestamps of recent events per key, in a bounded LRU map."""

    def __init__(self, limit: int, window_s: float, max_tracked: int) -> None:
        self.limit = limit
        self.window_s = window_s
        self.max_tracked = max_tracked
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def _recent(self, key: str, now: float) -> deque[float] | None:
        times = self._events.get(key)
        if times is None:
            return None
        while times and now - times[0] >= self.window_s:
            times.popleft()
        if not times:
            del self._events[key]
            return None
        return times

    def full(self, key: str, now: float) -> bool:
        times = self._recent(key, now)
        return times is not None and len(times) >= self.limit

    def add(self, key: str, now: float) -> None:
        times = self._recent(key, now)
        if times is None:
            times = deque(maxlen=self.limit)
            self._events[key] = times
            while len(self._events) > self.max_tracked:
                self._events.popitem(last=False)
        self._events.move_to_end(key)
        times.append(now)

    def __len__(self) -> int:
        return len(self._events)


class LoginLimiter:
    def __init__(self, clock: Clock, *, window_s: float = DEFAULT_WINDOW_S,
                 max_failures_per_user: int = DEFAULT_MAX_FAILURES_PER_USER,
                 max_attempts_per_source: int = DEFAULT_MAX_ATTEMPTS_PER_SOURCE,
                 max_tracked: int = DEFAULT_MAX_TRACKED) -> None:
        assert window_s > 0 and max_failures_per_user >= 1 and max_attempts_per_source >= 1
        self.clock = clock
        self._users = _Window(max_failures_per_user, window_s, max_tracked)
        self._sources = _Window(max_attempts_per_source, window_s, max_tracked)
        self._lock = threading.Lock()

    def begin(self, user: str, source: str) -> bool:
        """May ``source`` try to log in as ``user`` now? Counts the attempt if so."""
        now = self.clock.monotonic_s()
        with self._lock:
            if self._users.full(user, now) or self._sources.full(source, now):
                return False
            self._sources.add(source, now)
            return True

    def failed(self, user: str) -> None:
        with self._lock:
            self._users.add(user, self.clock.monotonic_s())

    def tracked(self) -> int:
        with self._lock:
            return len(self._users) + len(self._sources)
