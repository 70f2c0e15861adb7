"""Transfer accounting of one upload or download: per peer, and the exact resent segments.

The chaos checkers compare ``resent`` with the fault log: guarantee 2 says they are equal.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any

MAX_LISTED_SEGMENTS = 100_000  # cap on resent/refetched lists kept in a file document


@dataclass
class PeerCounters:
    segments_sent: int = 0
    segments_rejected: int = 0
    segments_resent: int = 0
    bytes_sent: int = 0
    chunks_stored: int = 0
    segments_fetched: int = 0
    segments_bad: int = 0
    bytes_fetched: int = 0
    failures: int = 0


@dataclass
class TransferLedger:
    per_peer: dict[str, PeerCounters] = field(default_factory=dict)
    # (chunk index, segment index, peer id) of every segment sent again after a rejection
    resent: list[tuple[int, int, str]] = field(default_factory=list)
    # (chunk index, segment index, peer id) of every segment fetched bad from a peer
    bad_fetched: list[tuple[int, int, str]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def peer(self, peer_id: str) -> PeerCounters:
        # Callers hold self._lock via the methods below.
        return self.per_peer.setdefault(peer_id, PeerCounters())

    def sent(self, peer_id: str, chunk_index: int, segment_index: int, nbytes: int,
             *, resend: bool) -> None:
        with self._lock:
            c = self.peer(peer_id)
            c.segments_sent += 1
            c.bytes_sent += nbytes
            if resend:
                c.segments_resent += 1
                if len(self.resent) < MAX_LISTED_SEGMENTS:
                    self.resent.append((chunk_index, segment_index, peer_id))

    def rejected(self, peer_id: str, count: int) -> None:
        with self._lock:
            self.peer(peer_id).segments_rejected += count

    def stored(self, peer_id: str) -> None:
        with self._lock:
            self.peer(peer_id).chunks_stored += 1

    def fetched(self, peer_id: str, chunk_index: int, segment_index: int, nbytes: int,
                *, good: bool) -> None:
        with self._lock:
            c = self.peer(peer_id)
            c.segments_fetched += 1
            c.bytes_fetched += nbytes
            if not good:
                c.segments_bad += 1
                if len(self.bad_fetched) < MAX_LISTED_SEGMENTS:
                    self.bad_fetched.append((chunk_index, segment_index, peer_id))

    def failed(self, peer_id: str) -> None:
        with self._lock:
            self.peer(peer_id).failures += 1

    def totals(self) -> PeerCounters:
        with self._lock:
            total = PeerCounters()
            for c in self.per_peer.values():
                for name, value in asdict(c).items():
                    setattr(total, name, getattr(total, name) + value)
            return total

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            per_peer = {p: asdict(c) for p, c in sorted(self.per_peer.items())}
            resent = [list(t) for t in sorted(self.resent)]
            bad = [list(t) for t in sorted(self.bad_fetched)]
        return {"per_peer": per_peer, "totals": asdict(self.totals()),
                "resent": resent, "bad_fetched": bad}
