"""The simulator at engine level: the product's code over the simulated network and disks."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from chaos.runner import derive_seed as chaos_derive_seed
from sim import disk
from sim.clock import SimClock
from sim.network import LinkSpec, Network, SimToxic
from sim.world import derive_seed
from tests.sim.helpers import run, scenario_of, why


def test_derive_seed_equals_the_chaos_harness() -> None:
    """One (scenario, seed) drives the same draws in the harness and in the simulator."""
    for name, seed in [("corruption", 7), ("random", 1), ("slow-peer", 123456)]:
        assert derive_seed(name, seed) == chaos_derive_seed(name, seed)


def test_clock_runs_due_actions_in_time_then_schedule_order() -> None:
    """Timeline entries run when time passes them, by (time, order scheduled); a cancelled
    one never runs and moves no time."""
    clock = SimClock(start_ms=0)
    seen: list[str] = []
    clock.at_ms(20, lambda: seen.append("b"))
    clock.at_ms(10, lambda: seen.append("a"))
    clock.at_ms(20, lambda: seen.append("c"))
    dropped = clock.at_ms(500, lambda: seen.append("never"))
    dropped.cancel()
    clock.advance_ms(15)
    assert seen == ["a"] and clock.now_ms() == 15
    clock.sleep(0.010)
    assert seen == ["a", "b", "c"] and clock.now_ms() == 25
    clock.run_all(limit_ns=10**12)
    assert seen == ["a", "b", "c"] and clock.now_ms() == 25


def test_clock_frozen_never_moves() -> None:
    """While frozen (checkers run), neither sleep nor advance moves time."""
    clock = SimClock(start_ms=0)
    clock.frozen = True
    clock.sleep(5)
    clock.advance_ms(100)
    assert clock.now_ms() == 0


def test_network_toxics_cost_latency_and_bandwidth() -> None:
    """A latency toxic adds to one direction only; a bandwidth toxic caps it at rate KB/s."""
    net = Network(LinkSpec(latency_ms=1.0, bandwidth_bytes_per_s=1e9), random.Random(1))
    net.add_toxic(SimToxic("t1", target="b", kind="latency", stream="upstream",
                           attributes=(("latency", 40),)))
    net.add_toxic(SimToxic("t2", target="b", kind="bandwidth", stream="downstream",
                           service="sender", attributes=(("rate", 100),)))
    up = net.path("a", "b", "sender", "upstream")
    down = net.path("a", "b", "sender", "downstream")
    assert up.latency_ms == 41.0 and down.latency_ms == 1.0
    assert down.bandwidth_bytes_per_s == 100_000.0
    assert net.message_ms(down, 100_000, first=False) == pytest.approx(1000.0)
    assert net.path("a", "b", "receiver", "downstream").bandwidth_bytes_per_s == 1e9


def test_network_cut_refuses_and_heal_restores() -> None:
    """A cut refuses one direction of one link; heal removes cuts and toxics."""
    net = Network(LinkSpec(), random.Random(1))
    net.cut("a", "b")
    assert net.breakage("a", "b", "receiver") is not None
    assert net.breakage("b", "a", "receiver") is None
    net.add_toxic(SimToxic("t", target="c", kind="timeout", stream="upstream",
                           attributes=(("timeout", 0),)))
    stall = net.breakage("a", "c", "sender")
    assert stall is not None and stall.kind == "stall" and stall.after_ms is None
    net.heal()
    assert net.breakage("a", "b", "receiver") is None and net.breakage("a", "c", "x") is None


def test_disk_power_loss_takes_only_unsynced_uploads(tmp_path: Path) -> None:
    """A power loss zeroes segments of uploads in progress, cut by the header in the
    ``.part``'s resume trailer (which stays readable), never a committed chunk."""
    from mydrive.storage.chunkstore import _part_trailer
    from tests.strategies import random_chunk

    committed = tmp_path / "chunks" / "ab" / "ab01.chunk"
    committed.parent.mkdir(parents=True)
    committed.write_bytes(b"\x07" * 8192)
    header, _ = random_chunk(8 * 4096 - 100, 4096)
    trailer = _part_trailer(header)
    part = tmp_path / "incoming" / "cd02.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\x09" * header.chunk_size_bytes + trailer)
    lost = disk.power_loss(tmp_path, random.Random(3))
    assert committed.read_bytes() == b"\x07" * 8192
    data = part.read_bytes()
    assert data[header.chunk_size_bytes:] == trailer
    ranges = [header.segment_range(i) for i in range(header.segment_count)]
    zeroed = sum(1 for a, b in ranges if data[a:b] == bytes(b - a))
    assert zeroed == lost and 0 < lost < 8


def test_disk_power_loss_zeroes_a_part_without_a_readable_trailer(tmp_path: Path) -> None:
    part = tmp_path / "incoming" / "cd02.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\x09" * 5000)
    assert disk.power_loss(tmp_path, random.Random(3)) == 1
    assert part.read_bytes() == bytes(5000)


@pytest.mark.parametrize("name", ["corruption", "peer-loss-during-upload"])
def test_sim_catalog_scenario_holds(name: str) -> None:
    """A catalog scenario runs in the simulator and every checker passes."""
    from sim.scenario import find

    report = run(find(name), seed=1, small=False)
    assert report.ok, why(report)
    assert report.trace_hash and report.events > 100


def test_sim_kill_mid_upload_fails_over_and_file_comes_back() -> None:
    """The victim killed on its first segment: the upload fails over, the get succeeds."""
    scenario = scenario_of("kill-mid-upload", [
        {"do": "toxic", "peer": "victim", "service": "receiver", "type": "bandwidth",
         "stream": "upstream", "attributes": {"rate": 64}},
        {"do": "put", "file": "a.bin", "size_bytes": 400_000, "background": True},
        {"do": "kill", "peer": "victim", "when": "receiving"},
        {"do": "wait"},
        {"do": "get", "file": "a.bin"},
    ])
    report = run(scenario, seed=5)
    assert report.ok, why(report)
    put = report.ops[0]
    assert put["totals"]["failures"] >= 1, f"the kill never landed mid-upload; {why(report)}"


def test_sim_same_seed_same_trace_other_seed_other_trace() -> None:
    """Same seed, same commit: the same trace hash; another seed: another one."""
    from sim.generate import generate

    first = run(generate(3, 5), seed=3)
    again = run(generate(3, 5), seed=3)
    other = run(generate(4, 5), seed=4)
    assert first.trace_hash == again.trace_hash, why(first)
    assert first.events == again.events
    assert other.trace_hash != first.trace_hash


def test_sim_remove_while_down_deletes_at_the_next_pass() -> None:
    """rm with a replica down leaves it pending; after resume, gc removes its copies."""
    from sim.scenario import find

    report = run(find("remove-while-down"), seed=2)
    assert report.ok, why(report)
    verdict = next(v for v in report.verdicts if v.checker == "deletes-as-pending")
    assert verdict.verdict == "pass" and "0 chunk cop" in verdict.detail


def test_sim_product_repair_restores_after_a_wiped_peer() -> None:
    """A replica peer dies with its disk; the product's check --repair (run_check) restores
    every chunk to R from the survivors; after a second peer dies every file comes back."""
    scenario = scenario_of("wipe-and-repair", [
        {"do": "put", "file": "a.bin", "size_bytes": 300_000},
        {"do": "put", "file": "b.bin", "size_bytes": 200_000},
        {"do": "kill", "peer": "victim"},
        {"do": "disk_loss", "peer": "victim"},
        {"do": "repair", "dead_after_s": 0},
        {"do": "kill", "peer": "bystander"},
        {"do": "get", "file": "a.bin"},
        {"do": "get", "file": "b.bin"},
    ])
    report = run(scenario, seed=4)
    assert report.ok, why(report)
    repair = next(op for op in report.ops if op["op"] == "repair")
    assert repair["outcome"] == "ok", why(report)
