"""Seeded fault points in the transfer path (test-bed only; off unless configured).

Like FoundationDB's BUGGIFY: the code asks "corrupt this segment now?" and a plan derived
from one seed answers, so the harness knows exactly which segments it corrupted. The plan
comes from the ``MYDRIVE_FAULTS`` environment variable (JSON) and nothing else, e.g.
``{"seed": 7, "corrupt_upload_rate": 0.05, "log": "/tmp/faults.jsonl"}``.
Every corruption is appended to the log as one JSON line.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from .digest import digest
from .errors import BadRequest

ENV_VAR = "MYDRIVE_FAULTS"


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
    def from_env(cls, environ: dict[str, str] | None = None) -> FaultPlan:
        raw = (os.environ if environ is None else environ).get(ENV_VAR, "")
        if not raw:
            return cls()
        try:
            doc = json.loads(raw)
            plan = cls(seed=int(doc.get("seed", 0)),
                       corrupt_upload_rate=float(doc.get("corrupt_upload_rate", 0.0)),
                       corrupt_serve_rate=float(doc.get("corrupt_serve_rate", 0.0)),
                       log=Path(doc["log"]) if doc.get("log") else None)
        except (ValueError, TypeError, AttributeError) as exc:
            raise BadRequest(f"bad {ENV_VAR}: {exc}") from exc
        for rate in (plan.corrupt_upload_rate, plan.corrupt_serve_rate):
            if not 0.0 <= rate <= 1.0:
                raise BadRequest(f"bad {ENV_VAR}: rates must be within [0, 1]")
        return plan


class FaultPoints:
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

    def upload_segment(self, data: bytes, *, chunk_id: bytes, chunk_index: int,
                       segment_index: int, replica: int, peer_id: str, attempt: int) -> bytes:
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


def _flip_first_byte(data: bytes) -> bytes:
    if not data:
        return data
    return bytes([data[0] ^ 0x01]) + data[1:]


def read_fault_log(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
