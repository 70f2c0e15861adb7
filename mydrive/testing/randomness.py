"""Seeded randomness for tests and the simulator (never the product: it is not a CSPRNG).

One seed gives the same bytes in the same order, so a run driven by one thread (see
``mydrive.runtime.executor.inline_executor``) replays exactly.
"""

from __future__ import annotations

import random
import threading


class SeededRandomness:
    """``mydrive.runtime.randomness.Randomness`` from a seed (Python's Mersenne Twister)."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def random_bytes(self, size_bytes: int) -> bytes:
        assert size_bytes >= 0
        with self._lock:
            return self._rng.randbytes(size_bytes)
