"""Seeded fault hooks for the test-bed (mydrive.runtime.faults.FaultHooks).

Like FoundationDB's BUGGIFY: the code asks "corrupt this segment now?" and a plan derived
from one seed answers, so the harness knows exactly which segments it corrupted. A process
runs them only when the harness starts it with ``--fault-plan FILE`` (JSON), e.g.
``{"seed": 7, "corrupt_upload_rate": 0.05, "log": "/tmp/faults.jsonl"}``; an environment
variable never switches them on. Every corruption is appended to the log as one JSON line.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

from mydrive.errors import BadRequest
from mydrive.formats.digest import digest


@dataclass(frozen=True)
class FaultPlan:
    seed: int = 0
    corrupt_upload_rate: float = 0.0   # sender side, first attempt of a segment only
    corrupt_serve_rate: float = 0.0    # sender service, when serving a fetch
    log: Path | None = None

    @property
    def active(self) -> bool:
        return self.corrupt_upload_rate > 0 or self.corrupt_serve_rate > 0

    @classmethod
    def from_json(cls, raw: str, *, source: str = "fault plan") -> FaultPlan:
        """Parse a plan; a malformed one is a BadRequest naming ``source``."""
        try:
            doc = json.loads(raw)
            plan = cls(seed=int(doc.get("seed", 0)),
                       corrupt_upload_rate=float(doc.get("corrupt_upload_rate", 0.0)),
                       corrupt_serve_rate=float(doc.get("corrupt_serve_rate", 0.0)),
                       log=Path(doc["log"]) if doc.get("log") else None)
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise BadRequest(f"bad {source}: {exc}") from exc
        for rate in (plan.corrupt_upload_rate, plan.corrupt_serve_rate):
            if not 0.0 <= rate <= 1.0:
                raise BadRequest(f"bad {source}: rates must be within [0, 1]")
        return plan

    @classmethod
    def from_file(cls, path: Path) -> FaultPlan:
        try:
            raw = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise BadRequest(f"cannot read fault plan {path}: {exc.strerror}") from exc
        return cls.from_json(raw, source=f"fault plan {path}")

    def write(self, path: Path) -> Path:
        """Store the plan for a process the harness starts with ``--fault-plan path``."""
        doc = {"seed": self.seed, "corrupt_upload_rate": self.corrupt_upload_rate,
               "corrupt_serve_rate": self.corrupt_serve_rate,
               "log": str(self.log) if self.log else None}
        path.write_text(json.dumps(doc), encoding="utf-8")
        return path


class SeededFaults:
    """FaultHooks that corrupt the segments a FaultPlan picks, and log each one."""

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._lock = threading.Lock()

    def _chosen(self, point: str, rate: float, *parts: bytes | str | int) -> bool:
        if rate <= 0:
            return False
        material = "|".join(
            [point, str(self.plan.seed)] + [p.hex() if isinstance(p, bytes) else str(p)
                                            for p in parts]
        ).encode()
        draw = int.from_bytes(digest(material)[:8], "big") / 2**64
        return draw < rate

    def upload_segment(self, data: bytes | memoryview, *, chunk_id: bytes, chunk_index: int,
                       segment_index: int, replica: int, peer_id: str,
                       attempt: int) -> bytes | memoryview:
        """Maybe corrupt a segment on its way to a receiver, after its digest was announced.

        The choice depends on the seed and on positions only (chunk, segment, replica slot),
        not on random file ids, so one seed corrupts the same segments on every run.
        """
        if attempt > 0 or not self._chosen("upload", self.plan.corrupt_upload_rate,
                                           chunk_index, segment_index, replica):
            return data
        self._record("upload", chunk_id, segment_index, peer_id)
        return _flip_first_byte(data)

    def serve_segment(self, data: bytes, *, chunk_id: bytes, segment_index: int,
                      peer_id: str, nonce: bytes) -> bytes:
        """Maybe corrupt a segment a sender serves (a peer returning bad data)."""
        if not self._chosen("serve", self.plan.corrupt_serve_rate,
                            chunk_id, segment_index, peer_id, nonce):
            return data
        self._record("serve", chunk_id, segment_index, peer_id)
        return _flip_first_byte(data)

    def _record(self, point: str, chunk_id: bytes, segment_index: int, peer_id: str) -> None:
        if self.plan.log is None:
            return
        line = json.dumps({"point": point, "chunk_id": chunk_id.hex(),
                           "segment": segment_index, "peer": peer_id})
        with self._lock, open(self.plan.log, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def _flip_first_byte(data: bytes | memoryview) -> bytes:
    if not data:
        return bytes(data)
    return bytes([data[0] ^ 0x01]) + data[1:]


def read_fault_log(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
