"""Determinism: with every nondeterminism handed in (seeded randomness, the inline executor,
a manual clock, seeded faults), one seed gives one event log, byte for byte."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mydrive.crypto.keys import create_user
from mydrive.crypto.primitives import new_kdf_params
from mydrive.engine.download import download_file
from mydrive.engine.upload import upload_file
from mydrive.runtime.events import EventLog
from mydrive.runtime.executor import inline_executor
from mydrive.testing.faults import FaultPlan, SeededFaults
from mydrive.testing.randomness import SeededRandomness
from tests.strategies import FAST_KDF, SMALL_SETTINGS, mem_network, record_of

FILE_BYTES = 400_001  # 7 chunks of SMALL_SETTINGS


def _run(root: Path, seed: int) -> tuple[bytes, bytes]:
    """One seeded upload and download with resends and a dead replica: (log, wrapped key)."""
    randomness = SeededRandomness(seed)
    _, keys = create_user("alice", "pw", random_bytes=randomness.random_bytes,
                          kdf_params=new_kdf_params(randomness.random_bytes, **FAST_KDF))
    net = mem_network(root / "peers", 6)
    src = root / "src.bin"
    src.write_bytes(random.Random(seed).randbytes(FILE_BYTES))
    events = EventLog()
    faults = SeededFaults(FaultPlan(seed=seed, corrupt_upload_rate=0.05))
    result = upload_file(src, keys=keys, owner_peer_id="p0", peers=net.peers,
                         settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock,
                         faults=faults, randomness=randomness, executor=inline_executor,
                         events=events)
    net.transport.down.add(result.chunks[0].replicas[0])  # the download must fail over
    out = root / "out.bin"
    download_file(record_of(result, keys), out, keys=keys, peers=net.addresses,
                  settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock,
                  randomness=randomness, executor=inline_executor, events=events)
    assert out.read_bytes() == src.read_bytes()
    return events.to_jsonl(), result.wrapped_file_key


@pytest.mark.parametrize("seed", [1, 2])
def test_engine_same_seed_same_event_log(tmp_path: Path, seed: int) -> None:
    """Twice the same seed: byte-identical event logs (placement, segments sent, resends,
    fetches, failovers) and the same wrapped file key; the next seed: another log."""
    first, first_key = _run(tmp_path / "a", seed)
    again, again_key = _run(tmp_path / "b", seed)
    other, _ = _run(tmp_path / "c", seed + 100)
    kinds = {line.split(b'"kind":"')[1].split(b'"')[0] for line in first.splitlines()}
    assert {b"upload.placed", b"upload.sent", b"upload.rejected", b"upload.stored",
            b"download.fetch", b"download.segment", b"download.failed"} <= kinds, \
        f"seed {seed}: the run must exercise resends and failover, got {sorted(kinds)}"
    assert b'"attempt":1' in first, f"seed {seed}: no resend in the log"
    assert first == again, f"seed {seed}: the same seed gave two different event logs"
    assert first_key == again_key, f"seed {seed}: the file key was wrapped with other randomness"
    assert other != first, f"seed {seed}: another seed gave the same event log"
