"""Download: a replica found unreachable is asked last for the chunks that follow."""

from __future__ import annotations

from pathlib import Path

from mydrive.engine.download import download_file
from mydrive.engine.upload import upload_file
from mydrive.runtime.executor import inline_executor
from mydrive.runtime.faults import NO_FAULTS
from tests.strategies import SMALL_SETTINGS, fast_user, mem_network, random_file, record_of


def test_dead_replica_costs_one_failed_fetch_not_one_per_chunk(tmp_path: Path) -> None:
    """Chunks fetched one after another (inline executor): the dead peer is tried for the
    first chunk that lists it first, then asked last, so it never fails again."""
    net = mem_network(tmp_path / "peers", 5)
    keys = fast_user()
    src = random_file(tmp_path / "src.bin", 600_000)
    result = upload_file(src, keys=keys, owner_peer_id="p0", peers=net.peers,
                         settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock,
                         faults=NO_FAULTS)
    first = [c.replicas[0] for c in result.chunks]
    victim = max(set(first), key=first.count)
    assert first.count(victim) >= 3, "the test needs a peer listed first for several chunks"
    net.transport.down.add(victim)
    out = tmp_path / "a.bin"
    ledger = download_file(record_of(result, keys), out, keys=keys, peers=net.addresses,
                           settings=SMALL_SETTINGS, transport=net.transport, clock=net.clock,
                           executor=inline_executor)
    assert out.read_bytes() == src.read_bytes()
    assert ledger.per_peer[victim].failures == 1
