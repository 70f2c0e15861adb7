"""Counters for transfer accounting, rendered as Prometheus text (``/metrics``)."""

from __future__ import annotations

import threading
from collections import defaultdict

MAX_SERIES = 10_000  # label combinations per registry; more is a bug or an attack


class Metrics:
    def __init__(self, namespace: str = "mydrive") -> None:
        self.namespace = namespace
        self._lock = threading.Lock()
        self._values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = defaultdict(float)
        self._help: dict[str, str] = {}

    def describe(self, name: str, help_text: str) -> None:
        self._help[name] = help_text

    def inc(self, name: str, amount: float = 1.0, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        with self._lock:
            if key not in self._values and len(self._values) >= MAX_SERIES:
                return
            self._values[key] += amount

    def value(self, name: str, **labels: str) -> float:
        with self._lock:
            return self._values.get((name, tuple(sorted(labels.items()))), 0.0)

    def render(self) -> str:
        """Prometheus text exposition format, version 0.0.4."""
        with self._lock:
            items = sorted(self._values.items())
        lines: list[str] = []
        seen: set[str] = set()
        for (name, labels), value in items:
            full = f"{self.namespace}_{name}"
            if name not in seen:
                seen.add(name)
                if name in self._help:
                    lines.append(f"# HELP {full} {self._help[name]}")
                lines.append(f"# TYPE {full} counter")
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels)
            lines.append(f"{full}{{{label_text}}} {value:g}" if labels else f"{full} {value:g}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
