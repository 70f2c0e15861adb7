"""check, repair and the background pass on the in-memory network of real peer directories."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import pytest

from mydrive.client import PeerClient
from mydrive.crypto.keys import UserKeys
from mydrive.engine.check import strays_of
from mydrive.engine.durability import DurabilitySettings, DurabilityState
from mydrive.engine.repair import (
    INTENT_WRITTEN,
    RECORD_COMMITTED,
    REPLICA_STORED,
    STRAYS_CLEANED,
    Pacer,
)
from mydrive.engine.repair_policy import RepairBudget
from mydrive.formats.filerecord import ChunkRecord, FileRecord
from mydrive.node.peerdir import init_peer, register_peer
from mydrive.runtime.events import EventLog
from mydrive.runtime.metrics import Metrics
from mydrive.testing.clock import ManualClock
from mydrive.testing.randomness import SeededRandomness
from tests.clientnet import SMALL_CHUNKS, ClientNet, client_net
from tests.strategies import random_file

PASS = "alice passphrase"
SIZES = (150_000, 300_000, 40_000)


@dataclass
class World:
    net: ClientNet
    client: PeerClient
    keys: UserKeys
    sources: dict[str, Path]
    tmp: Path

    def records(self) -> list[FileRecord]:
        return sorted(self.client._records(self.keys), key=lambda r: r.file_id)

    def on_disk_good(self, peer_id: str, chunk: ChunkRecord, digest_alg: str) -> bool:
        """The peer's disk holds the chunk and its bytes are the chunk (by the record's
        scheme: the id and segment digests)."""
        store = self.net.chunk_store(peer_id)
        if not store.has(chunk.chunk_id):
            return False
        return chunk.matches_ciphertext(store.ciphertext(chunk.chunk_id), digest_alg)

    def good_counts(self) -> dict[tuple[bytes, int], int]:
        """Per chunk, how many of the record's replicas truly hold it, on disk."""
        return {(r.file_id, c.index): sum(self.on_disk_good(p, c, r.digest_alg)
                                          for p in c.replicas)
                for r in self.records() for c in r.chunks}

    def assert_no_full_file(self) -> None:
        for record in self.records():
            ids = {c.chunk_id for c in record.chunks}
            for peer_id in self.net.peer_ids:
                store = self.net.chunk_store(peer_id)
                held = {c for c in ids if store.has(c)}
                assert len(held) < len(ids), f"{peer_id} holds every chunk of a file"

    def assert_downloads(self) -> None:
        for name, src in self.sources.items():
            path, _ = self.client.get(self.keys, name, out_dir=self.tmp / "out", overwrite=True)
            assert path.read_bytes() == src.read_bytes(), name


WORLD_SEED = 20261129  # one fixed world: which chunks a peer holds decides how many repairs run


def _world(tmp_path: Path, n: int = 6) -> World:
    net = client_net(tmp_path / "net", n=n, seed=WORLD_SEED)
    client = net.client()
    client.randomness = SeededRandomness(WORLD_SEED)
    client.create_user("alice", PASS)
    keys = client.login("alice", PASS)
    sources = {}
    for i, size in enumerate(SIZES):
        src = tmp_path / f"src{i}"
        src.write_bytes(random.Random(WORLD_SEED + i).randbytes(size))
        client.put(keys, src, f"/f{i}.bin")
        sources[f"/f{i}.bin"] = src
    return World(net, client, keys, sources, tmp_path)


def _wipe(world: World, peer_id: str) -> None:
    store = world.net.chunk_store(peer_id)
    for chunk_id in list(store.chunk_ids()):
        store.remove(chunk_id)


def _victim(world: World) -> str:
    return world.records()[0].chunks[0].replicas[0]


def _lost_replicas(world: World, peer_id: str) -> set[tuple[str, int, str]]:
    return {(r.file_id.hex(), c.index, peer_id) for r in world.records() for c in r.chunks
            if peer_id in c.replicas}


def _reported_lost(report) -> set[tuple[str, int, str]]:
    return {(f["file_id"], item["chunk"], item["peer"])
            for f in report.to_json()["files"] for item in f["lost"]}


def test_check_reports_exactly_the_lost_replicas(tmp_path: Path) -> None:
    """A peer's data deleted for good: check names exactly its replicas, as missing."""
    world = _world(tmp_path)
    victim = _victim(world)
    assert world.client.check(world.keys).healthy
    _wipe(world, victim)
    report = world.client.check(world.keys)
    assert _reported_lost(report) == _lost_replicas(world, victim)
    summary = report.summary()
    assert summary["missing"] == len(_lost_replicas(world, victim))
    assert summary["good"] == summary["replicas"] - summary["missing"]
    assert not report.healthy and not report.unavailable
    assert report.audits.replicas == summary["replicas"]
    assert report.audits.bytes > 0


def test_check_repair_restores_r_then_survives_a_second_loss(tmp_path: Path) -> None:
    """--repair brings every chunk back to R proven replicas; then another original holder
    is lost and every file still downloads bit-identical; no peer ever holds a whole file."""
    world = _world(tmp_path)
    victim = _victim(world)
    original = {(r.file_id, c.index): set(c.replicas) for r in world.records()
                for c in r.chunks}
    _wipe(world, victim)
    report = world.client.check(world.keys, repair=True)
    assert report.healthy and report.repair is not None
    assert report.repair.replicated == len(_lost_replicas_before(original, victim))
    assert report.repair.bytes_fetched > 0 and report.repair.bytes_stored > 0
    assert all(n == 2 for n in world.good_counts().values())
    for record in world.records():
        assert strays_of(record) == {}
        for chunk in record.chunks:
            assert victim not in chunk.replicas or (record.file_id, chunk.index) not in \
                _lost_replicas_before(original, victim)
    world.assert_no_full_file()
    again = world.client.check(world.keys, repair=True)
    assert again.healthy and again.repair.replicated == 0
    assert again.repair.bytes_stored == 0 and again.repair.records_written == 0
    second = next(p for c in world.records()[1].chunks for p in c.replicas
                  if p != victim and any(p in holders for holders in original.values()))
    world.net.transport.down.add(second)
    world.assert_downloads()


def _lost_replicas_before(original: dict, victim: str) -> set[tuple[bytes, int]]:
    return {key for key, holders in original.items() if victim in holders}


def test_repair_replaces_a_corrupt_replica_and_deletes_it(tmp_path: Path) -> None:
    """Bit rot found by --verify: a new replica elsewhere, the rotten copy deleted."""
    world = _world(tmp_path)
    record = world.records()[1]
    chunk = record.chunks[1]
    rotten = chunk.replicas[1]
    store = world.net.chunk_store(rotten)
    store.rot_ciphertext(chunk.chunk_id, store.ciphertext_extent(chunk.chunk_id)[1] // 2, 0x55)
    report = world.client.check(world.keys, verify_all=True, repair=True)
    before = {(f["file_id"], i["chunk"], i["peer"], i["state"])
              for f in report.to_json()["files"] for i in f["lost"]}
    assert before == {(record.file_id.hex(), 1, rotten, "corrupt")}
    assert report.repair.replicated == 1 and report.repair.strays_deleted == 1
    now = next(r for r in world.records() if r.file_id == record.file_id)
    assert rotten not in now.chunks[1].replicas and len(now.chunks[1].replicas) == 2
    assert not world.net.chunk_store(rotten).has(chunk.chunk_id)
    assert strays_of(now) == {}
    world.assert_downloads()


def test_download_bitrot_makes_a_suspect_the_next_pass_repairs(tmp_path: Path) -> None:
    """A download that met a bad segment flags the replica; the next pass audits it whole
    (even with no sampled audits) and repairs it from the good replica."""
    world = _world(tmp_path)
    record = world.records()[0]
    chunk = record.chunks[0]
    rotten = chunk.replicas[0]  # asked first by the download
    store = world.net.chunk_store(rotten)
    store.rot_ciphertext(chunk.chunk_id, store.ciphertext_extent(chunk.chunk_id)[1] - 1, 0x01)
    name = world.client._decrypted_path(world.keys, record)
    world.client.get(world.keys, name, out_dir=tmp_path / "o")
    state = DurabilityState.load(world.client.store, world.keys.user_id)
    assert state.suspects == [(record.file_id.hex(), 0, rotten)]
    report = world.client.durability_pass(
        world.keys, settings=DurabilitySettings(audits_per_pass=0, repair_bytes_per_s=None))
    assert report.audits.by_state == {"corrupt": 1}
    assert report.repair.replicated == 1
    assert not world.net.chunk_store(rotten).has(chunk.chunk_id)
    assert DurabilityState.load(world.client.store, world.keys.user_id).suspects == []
    world.assert_downloads()


class _Crash(Exception):
    """Stands for the process dying at that moment."""


class _CrashAt:
    def __init__(self, point: str, nth: int) -> None:
        self.point, self.nth, self.seen = point, nth, 0

    def reached(self, point: str, /, **where: str | int) -> None:
        if point == self.point:
            self.seen += 1
            if self.seen == self.nth:
                raise _Crash(f"{point} #{self.nth}")


class _DieMidStore:
    """Wraps the transport: the process dies while sending the nth stored segment."""

    def __init__(self, inner, after_segments: int) -> None:
        self.inner, self.left = inner, after_segments

    def __getattr__(self, name: str):
        return getattr(self.inner, name)

    def open_store(self, peer):
        session = self.inner.open_store(peer)
        outer = self

        class Session:
            def start(self, header):
                return session.start(header)

            def send_round(self, segments):
                def counted():
                    for item in segments:
                        outer.left -= 1
                        if outer.left < 0:
                            raise _Crash("mid-store")
                        yield item
                return session.send_round(counted())

            def close(self):
                session.close()

        return Session()


@pytest.mark.parametrize(("point", "nth"), [
    (INTENT_WRITTEN, 1), (INTENT_WRITTEN, 2), (REPLICA_STORED, 1), (REPLICA_STORED, 3),
    (RECORD_COMMITTED, 1), (RECORD_COMMITTED, 2), (STRAYS_CLEANED, 1), ("mid-store", 5)])
def test_repair_interrupted_anywhere_loses_nothing_and_rerun_finishes(
        tmp_path: Path, point: str, nth: int) -> None:
    """Killed at any step, a repair leaves every chunk with at least the proven replicas it
    had and no peer with a whole file; running it again restores R, cleans every stray and
    leaves no copy on disk that the records do not list."""
    world = _world(tmp_path)
    victim = _victim(world)
    _wipe(world, victim)
    before = world.good_counts()
    client = world.client
    if point == "mid-store":
        client = world.net.client()
        client.transport = _DieMidStore(world.net.transport, nth)
        crash = client.check
        hooks = None
    else:
        hooks = _CrashAt(point, nth)
        crash = world.client.check
    with pytest.raises(_Crash):
        crash(world.keys, repair=True, **({"hooks": hooks} if hooks else {}))
    after = world.good_counts()
    assert all(after[k] >= before[k] for k in before), (point, nth)
    world.assert_no_full_file()
    rerun = world.client.check(world.keys, repair=True)
    assert rerun.healthy
    if point == REPLICA_STORED:
        assert rerun.repair.adopted >= 1  # finished without moving those bytes again
    assert all(n == 2 for n in world.good_counts().values())
    for record in world.records():
        assert strays_of(record) == {}, point
        for chunk in record.chunks:
            holders = {p for p in world.net.peer_ids
                       if world.net.chunk_store(p).has(chunk.chunk_id)}
            assert holders == set(chunk.replicas), (point, nth, chunk.index)
    world.assert_no_full_file()
    world.assert_downloads()


def test_dead_peer_replaced_only_after_grace(tmp_path: Path) -> None:
    """An unreachable peer's replicas are replaced only after the grace period over several
    probes; a peer that came back in between is not replaced."""
    world = _world(tmp_path)
    clock: ManualClock = world.net.clock
    victim = _victim(world)
    settings = DurabilitySettings(dead_after_s=600, min_failed_probes=3, audits_per_pass=1000,
                                  repair_bytes_per_s=None)
    down = world.net.transport.down

    def tick(seconds: int):
        clock.advance_ms(seconds * 1000)
        return world.client.durability_pass(world.keys, settings=settings)

    down.add(victim)
    assert tick(0).repair.replicated == 0
    assert tick(300).repair.replicated == 0
    down.discard(victim)                      # back for a moment: a flap, not a death
    assert tick(300).repair.replicated == 0
    down.add(victim)
    assert tick(300).repair.replicated == 0   # down again: the grace starts over
    assert tick(300).repair.replicated == 0
    report = tick(300)                        # 600 s and 3 probes since it went down
    assert report.peer_status[victim].value == "dead"
    assert report.repair.replicated == len(_lost_replicas(world, victim) or [1]) or \
        report.healthy
    assert report.healthy
    assert all(victim not in c.replicas for r in world.records() for c in r.chunks)
    world.assert_no_full_file()
    world.assert_downloads()
    down.discard(victim)                      # it comes back with its old copies: deleted
    tick(60)
    assert not any(world.net.chunk_store(victim).has(c.chunk_id)
                   for r in world.records() for c in r.chunks)
    assert all(strays_of(r) == {} for r in world.records())
    tick(60)                                  # and it is not rebalanced onto for a while
    assert not any(world.net.chunk_store(victim).has(c.chunk_id)
                   for r in world.records() for c in r.chunks)


def test_pass_audits_are_spread_over_passes(tmp_path: Path) -> None:
    """k audits per pass: every replica is audited once in ceil(n/k) passes, not at once."""
    world = _world(tmp_path)
    events = EventLog()
    world.client.events = events
    total = sum(len(c.replicas) for r in world.records() for c in r.chunks)
    per_pass = 7
    passes = -(-total // per_pass)
    settings = DurabilitySettings(audits_per_pass=per_pass)
    for _ in range(passes):
        report = world.client.durability_pass(world.keys, settings=settings)
        assert report.audits.replicas <= per_pass
    audited = [(dict(e.fields)["file_id"], dict(e.fields)["chunk"], dict(e.fields)["peer"])
               for e in events.of_kind("audit.result")]
    assert len(audited) == passes * per_pass < total + per_pass
    assert len(set(audited)) == total  # all covered, none twice before the cursor wraps


def test_rebalance_moves_onto_a_new_peer_within_budget(tmp_path: Path) -> None:
    """A new big peer joins: each pass moves at most its budget onto it, R never drops,
    the old copies are deleted, and the moves stop."""
    world = _world(tmp_path)
    clock = world.net.clock
    chunk_bytes = SMALL_CHUNKS["chunk_size_bytes"]
    settings = DurabilitySettings(rebalance_bytes_per_pass=chunk_bytes, audits_per_pass=0,
                                  repair_bytes_per_s=None)
    # Fresh uploads already follow the placement: nothing to move.
    assert world.client.durability_pass(world.keys, settings=settings).repair.moved == 0
    new = init_peer(tmp_path / "net" / "peer-new", name="peer-new", capacity_bytes=2**44,
                    **SMALL_CHUNKS)
    world.net.transport.add_peer(new.config.peer_id, new.store_dir, clock=clock)
    world.net.dirs.append(new)
    register_peer(world.client.store, new.config)
    moves = 0
    for _ in range(30):
        report = world.client.durability_pass(world.keys, settings=settings)
        assert report.repair.moved <= 1
        moves += report.repair.moved
        assert all(n == 2 for n in world.good_counts().values())
        world.assert_no_full_file()
        if report.repair.moved == 0:
            break
    else:
        pytest.fail("rebalancing did not settle")
    assert moves >= 1
    for record in world.records():
        on_new = [c for c in record.chunks if new.config.peer_id in c.replicas]
        assert 1 <= len(on_new) < len(record.chunks)
    for record in world.records():
        for chunk in record.chunks:
            holders = {p for p in world.net.peer_ids
                       if world.net.chunk_store(p).has(chunk.chunk_id)}
            assert holders == set(chunk.replicas)
    world.assert_downloads()


def test_pacer_keeps_the_repair_rate(tmp_path: Path) -> None:
    """A repair paced at B bytes/s takes at least (bytes moved) / B on the handed-in clock."""
    clock = ManualClock()
    pacer = Pacer(clock, 1000.0)
    pacer.spend(5000)
    assert clock.monotonic_s() - pacer.started_s == pytest.approx(5.0)
    world = _world(tmp_path)
    _wipe(world, _victim(world))
    start = world.net.clock.monotonic_s()
    rate = 100_000.0
    report = world.client.check(world.keys, repair=True, max_bytes_per_s=rate,
                                budget=RepairBudget(1 << 40, 1 << 20))
    moved = report.repair.bytes_fetched + report.repair.bytes_stored
    assert moved > 0
    assert world.net.clock.monotonic_s() - start >= moved / rate - 1e-6
    assert report.repair.paced_s > 0


def test_check_metrics_and_totals_count_audits_and_repairs(tmp_path: Path) -> None:
    """A pass's metrics and the cumulative totals show audits, repairs and their bytes."""
    world = _world(tmp_path)
    _wipe(world, _victim(world))
    metrics = Metrics()
    report = world.client.durability_pass(
        world.keys, settings=DurabilitySettings(audits_per_pass=1000, repair_bytes_per_s=None),
        metrics=metrics)
    assert report.repair.replicated > 0
    text = metrics.render()
    assert 'mydrive_durability_audits_total{state="missing"}' in text
    assert f'mydrive_durability_repairs_total{{kind="replicate"}} {report.repair.replicated}' \
        in text
    fetched = report.repair.bytes_fetched
    assert f'mydrive_durability_repair_bytes_total{{direction="fetched"}} {fetched}' in text
    totals = world.client.check(world.keys).totals
    assert totals["passes"] == 1 and totals["checks"] == 1
    assert totals["replicas_repaired"] == report.repair.replicated
    assert totals["repair_bytes_fetched"] == fetched
    assert totals["audits"] >= report.audits.replicas
    doc = world.client.check(world.keys, repair=True).to_json()
    assert doc["healthy"] and doc["after"]["chunks_below_r"] == 0
    assert set(doc["transfer"]) == {"per_peer", "totals", "resent", "bad_fetched"}


def test_repair_with_one_peer_to_spare_makes_room_and_keeps_every_rule(tmp_path: Path) -> None:
    """5 peers, a replica peer dead for good, 3-chunk files: only three peers can take
    replicas, each at most two chunks of a file. The repair still restores R everywhere
    (moving a replica first where that is the only way), and no disk ever holds a whole
    file."""
    net = client_net(tmp_path / "net", n=5)
    client = net.client()
    client.create_user("alice", PASS)
    keys = client.login("alice", PASS)
    sources = {}
    for i in range(8):
        src = random_file(tmp_path / f"s{i}", 100_000)
        client.put(keys, src, f"/s{i}")
        sources[f"/s{i}"] = src
    world = World(net, client, keys, sources, tmp_path)
    assert all(len(r.chunks) == 3 for r in world.records())
    victim = _victim(world)
    net.transport.down.add(victim)
    settings = DurabilitySettings(dead_after_s=0, min_failed_probes=1)
    report = client.check(keys, repair=True, settings=settings)
    assert report.healthy, report.to_json()["repair"]
    for record in world.records():
        for chunk in record.chunks:
            assert victim not in chunk.replicas and len(chunk.replicas) == 2
            live = {p for p in net.peer_ids if p != victim
                    and net.chunk_store(p).has(chunk.chunk_id)}
            assert live == set(chunk.replicas)
    world.assert_no_full_file()
    world.assert_downloads()
