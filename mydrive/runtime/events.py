"""Events: what the transfer engine did, step by step, for whoever wants to watch.

The engine reports each step (placement, every segment sent and resent, every fetch, every
failover, every pause) to an ``EventRecorder`` it is handed, stamped with the engine's own
clock. The product passes ``NO_EVENTS``, which drops them; ``EventLog`` keeps them in order,
bounded, and renders them as JSON lines, so a test or a simulator can compare two runs byte
for byte (one seed, the inline executor and a manual clock give one log). Held in memory
only: a crash loses it.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Protocol

from mydrive.runtime.clock import Clock

EventValue = str | int | bool | None | tuple[str | int, ...]
MAX_EVENTS = 1_000_000  # default cap of an EventLog; later events are counted, not kept


class EventRecorder(Protocol):
    def record(self, kind: str, /, t_ms: int, **fields: EventValue) -> None:
        """Note that ``kind`` (e.g. ``upload.sent``) happened at ``t_ms`` (the recording
        code's clock, ``now_ms``), with its details."""
        ...


class NoEvents:
    """The product's recorder: keeps nothing."""

    def record(self, kind: str, /, t_ms: int, **fields: EventValue) -> None:
        return None


NO_EVENTS = NoEvents()


class ClockedEvents:
    """A recorder seen through one clock: ``note(kind, **fields)`` stamps with its time."""

    def __init__(self, recorder: EventRecorder, clock: Clock) -> None:
        self.recorder = recorder
        self.clock = clock

    def __call__(self, kind: str, /, **fields: EventValue) -> None:
        if self.recorder is NO_EVENTS:
            return  # the product: not even a clock reading
        self.recorder.record(kind, t_ms=self.clock.now_ms(), **fields)


@dataclass(frozen=True)
class Event:
    seq: int                # order of recording, from 0
    t_ms: int               # the recording code's clock (now_ms)
    kind: str
    fields: tuple[tuple[str, EventValue], ...]

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {"seq": self.seq, "t_ms": self.t_ms, "kind": self.kind}
        doc.update((k, list(v) if isinstance(v, tuple) else v) for k, v in self.fields)
        return doc


class EventLog:
    """An ``EventRecorder`` that keeps the first ``max_events`` events, in recording order."""

    def __init__(self, *, max_events: int = MAX_EVENTS) -> None:
        assert max_events >= 0
        self.max_events = max_events
        self.events: list[Event] = []
        self.dropped = 0
        self._lock = threading.Lock()

    def record(self, kind: str, /, t_ms: int, **fields: EventValue) -> None:
        with self._lock:
            if len(self.events) >= self.max_events:
                self.dropped += 1
                return
            self.events.append(Event(seq=len(self.events), t_ms=t_ms, kind=kind,
                                     fields=tuple(sorted(fields.items()))))

    def of_kind(self, kind: str) -> list[Event]:
        with self._lock:
            return [e for e in self.events if e.kind == kind]

    def to_jsonl(self) -> bytes:
        """One JSON object per line, keys sorted: equal logs give equal bytes."""
        with self._lock:
            events = list(self.events)
        return b"".join(json.dumps(e.to_json(), sort_keys=True, separators=(",", ":"))
                        .encode() + b"\n" for e in events)
