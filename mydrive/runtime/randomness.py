"""Randomness, handed in: every random byte the engine uses comes from one ``Randomness``.

The product uses ``SYSTEM_RANDOMNESS`` (the operating system's CSPRNG: file ids, file keys,
wrap nonces, fetch nonces). Tests and the simulator hand in a seeded source
(``mydrive.testing.randomness.SeededRandomness``) so one seed replays a run exactly. Nothing
is kept: a crash leaves nothing behind.
"""

from __future__ import annotations

import os
from typing import Protocol


class Randomness(Protocol):
    def random_bytes(self, size_bytes: int) -> bytes:
        """``size_bytes`` random bytes; key material, so the product's source is a CSPRNG."""
        ...


class SystemRandomness:
    """The operating system's CSPRNG (``os.urandom``)."""

    def random_bytes(self, size_bytes: int) -> bytes:
        return os.urandom(size_bytes)


SYSTEM_RANDOMNESS = SystemRandomness()
