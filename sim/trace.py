"""The event trace of one simulated run, and its hash (what "deterministic" is judged on).

The engine reports its steps (``upload.sent``, ``download.failed``, ...) to the
``EventRecorder`` it is handed; the simulator hands it a ``Trace`` and records its own steps
in the same stream (``sim.fault``, ``sim.net.refused``, ``sim.op.done``, checker verdicts).
Every event is rendered as one canonical JSON line (keys sorted, no whitespace) and fed to a
running SHA-256, so the hash covers the whole run however long it gets, while memory holds
only the last ``tail_events`` (the events printed before a violation) and, when asked, the
first ``keep_events`` (``--trace-out``). No wall clock, no paths: two runs of one seed on one
commit give the same bytes. Held in memory only.
"""

from __future__ import annotations

import hashlib
import json
from collections import deque
from pathlib import Path

from mydrive.runtime.events import EventValue

DEFAULT_TAIL_EVENTS = 40
MAX_KEEP_EVENTS = 2_000_000


def _plain(value: EventValue) -> object:
    return list(value) if isinstance(value, tuple) else value


class Trace:
    """A ``mydrive.runtime.events.EventRecorder`` that hashes everything and keeps a tail."""

    def __init__(self, *, tail_events: int = DEFAULT_TAIL_EVENTS, keep_events: int = 0) -> None:
        assert 0 <= keep_events <= MAX_KEEP_EVENTS
        self._hash = hashlib.sha256()
        self.count = 0
        self.tail: deque[str] = deque(maxlen=tail_events)
        self.keep_events = keep_events
        self.kept: list[str] = []
        self.kinds: dict[str, int] = {}

    def record(self, kind: str, /, t_ms: int, **fields: EventValue) -> None:
        doc: dict[str, object] = {k: _plain(v) for k, v in fields.items()}
        doc["seq"] = self.count
        doc["t_ms"] = t_ms
        doc["kind"] = kind
        line = json.dumps(doc, sort_keys=True, separators=(",", ":"))
        self._hash.update(line.encode())
        self._hash.update(b"\n")
        self.count += 1
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        self.tail.append(line)
        if len(self.kept) < self.keep_events:
            self.kept.append(line)

    @property
    def hash_hex(self) -> str:
        """SHA-256 of every event line so far (the run's trace hash)."""
        return self._hash.copy().hexdigest()

    def write(self, path: Path) -> None:
        path.write_text("".join(line + "\n" for line in self.kept), encoding="utf-8")
