"""Bugs planted on purpose, to show that each checker fails when its property breaks.

A checker that cannot fail is a defect. Each plant swaps one product function for a broken
one for the length of a run (and puts it back after), so a test can run a scenario with the
plant and assert that the simulator finds it from a seed, names the right checker and
shrinks the case. The product never sees these: only the simulator's ``--plant`` applies
them, in its own process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mydrive.engine.download as download_mod
import mydrive.engine.upload as upload_mod
import mydrive.storage.chunkstore as chunkstore_mod
import mydrive.storage.receiver as receiver_mod
import mydrive.storage.sender as sender_mod
from mydrive.formats.digest import digest

PLANTS: dict[str, str] = {
    "receiver-accepts-corrupt":
        "the chunk store takes every segment and chunk as verified (guarantee 2 and "
        "no-partial-state break)",
    "substitute-ignores-no-full-file":
        "when a replica peer fails mid-upload, its chunks go to the most loaded live peer, "
        "without the rule that no peer may hold every chunk (guarantee 1 breaks under churn)",
    "sender-skips-owner-check":
        "a sender serves any signed fetch, whoever signed it (guarantee 4 breaks)",
    "download-accepts-corrupt":
        "the download engine keeps segments without checking their digests (corrupt "
        "segments served reach the chunk: downloads break)",
    "receiver-acks-without-commit":
        "a receiver acknowledges a chunk without committing it (recoverability breaks)",
    "deleter-keeps-chunks":
        "a receiver answers an owner's delete as done but keeps the chunk (deletes break)",
}


def _always_equal(a: bytes, b: bytes) -> bool:
    return True


def _substitute_most_loaded(self: Any, chunk_index: int, failed_peer: str) -> str | None:
    with self._lock:
        self.failed.add(failed_peer)
        current = self.assigned[chunk_index]
        counts: dict[str, int] = {}
        for peers in self.assigned:
            for p in peers:
                counts[p] = counts.get(p, 0) + 1
        candidates = sorted(
            (p for p in self.eligible if p not in current and p not in self.failed),
            key=lambda p: (-counts.get(p, 0),
                           digest(self.file_id + chunk_index.to_bytes(4, "big") + p.encode())),
        )
        current.remove(failed_peer)
        if not candidates:
            return None
        current.append(candidates[0])
        return str(candidates[0])


def _authorize_anyone(*args: Any, **kwargs: Any) -> None:
    return None


def _end_round_without_commit(self: Any) -> list[int]:
    pending = self._require_started()
    self._rounds += 1
    missing: list[int] = pending.missing()
    return missing


def _remove_nothing(self: Any, chunk_id: bytes) -> bool:
    return bool(self.has(chunk_id))


@contextmanager
def planted(name: str | None) -> Iterator[None]:
    """Apply plant ``name`` (None: nothing) for the body of the ``with``."""
    if name is None:
        yield
        return
    if name not in PLANTS:
        raise ValueError(f"no plant {name!r}; one of {', '.join(sorted(PLANTS))}")
    table: dict[str, list[tuple[Any, str, Any]]] = {
        "receiver-accepts-corrupt": [(chunkstore_mod, "digests_equal", _always_equal)],
        "substitute-ignores-no-full-file": [(upload_mod._Replicas, "substitute",
                                             _substitute_most_loaded)],
        "sender-skips-owner-check": [(sender_mod, "authorize", _authorize_anyone)],
        "download-accepts-corrupt": [(download_mod, "digests_equal", _always_equal)],
        "receiver-acks-without-commit": [(receiver_mod.ReceiverSession, "end_round",
                                          _end_round_without_commit)],
        "deleter-keeps-chunks": [(chunkstore_mod.ChunkStore, "remove", _remove_nothing)],
    }
    swaps = table[name]
    saved = [(target, attr, getattr(target, attr)) for target, attr, _ in swaps]
    try:
        for target, attr, replacement in swaps:
            setattr(target, attr, replacement)
        yield
    finally:
        for target, attr, original in saved:
            setattr(target, attr, original)
