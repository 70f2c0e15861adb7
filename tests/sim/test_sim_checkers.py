"""Every checker fails when its property breaks: a bug planted on purpose, found from a seed,
named by the right checker, and shrunk to a smaller case that still fails."""

from __future__ import annotations

import pytest

from chaos.scenario import Scenario
from sim.checks import STEP_CHECKERS
from sim.plants import PLANTS, planted
from sim.scenario import dump, find
from sim.scenario import parse as sim_parse
from sim.shrink import shrink
from sim.world import SimConfig
from tests.sim.helpers import SMALL, run, scenario_of, why

PUT_GET_CHECK = [{"do": "put", "file": "a.bin", "size_bytes": 200_000},
                 {"do": "put", "file": "b.bin", "size_bytes": 90_000},
                 {"do": "check"}]


def _put_get_check(**top: object) -> Scenario:
    return scenario_of("plain", PUT_GET_CHECK, **top)


# checker -> (plant, scenario, seed): the broken property and a case that shows it.
CASES: dict[str, tuple[str, str | None, int]] = {
    "no-full-file": ("substitute-ignores-no-full-file", "peer-loss-during-upload", 7),
    "resent-equals-corrupted": ("receiver-accepts-corrupt", "corruption", 7),
    "no-partial-state": ("receiver-accepts-corrupt", "corruption", 7),
    "owner-only": ("sender-skips-owner-check", None, 1),
    "recoverable-from-replicas": ("receiver-acks-without-commit", None, 1),
    "deletes-as-pending": ("deleter-keeps-chunks", "remove-while-down", 3),
    "downloads-bit-identical": ("download-accepts-corrupt", None, 1),
    "operations-as-expected": ("download-accepts-corrupt", "corruption", 7),
}


def _case(checker: str) -> tuple[str, Scenario, int]:
    plant, name, seed = CASES[checker]
    if name is not None:
        return plant, find(name), seed
    # Every sender corrupts what it serves now and then: only the download's checks keep
    # a bad segment out of the file.
    return plant, _put_get_check(corrupt_serve_rate=0.2, corrupt_serve_peers="*"), seed


def test_every_checker_has_a_planted_bug_that_breaks_it() -> None:
    """No checker goes without a case showing it can fail, and every plant is used."""
    assert set(CASES) == set(STEP_CHECKERS) | {"downloads-bit-identical"}
    assert {plant for plant, _, _ in CASES.values()} == set(PLANTS)


@pytest.mark.parametrize("checker", sorted(CASES))
def test_checker_fails_on_its_planted_bug(checker: str) -> None:
    """The plant breaks the property: the run fails, and names this checker."""
    plant, scenario, seed = _case(checker)
    report = run(scenario, seed, plant=plant, small=scenario.name == "plain")
    assert report.violation is not None, f"{checker} did not fail on {plant}; {why(report)}"
    assert checker in report.violation.checkers, why(report)
    assert report.replay.endswith(f"--plant {plant}")
    assert report.violation.events_before, "a violation shows the events before it"


@pytest.mark.parametrize("checker", ["owner-only", "recoverable-from-replicas"])
def test_checker_passes_without_the_plant(checker: str) -> None:
    """The same case without the plant passes: the failure is the plant's."""
    _, scenario, seed = _case(checker)
    report = run(scenario, seed)
    assert report.ok, why(report)


def test_plants_are_undone_after_the_run() -> None:
    """A plant swaps product code only inside its ``with``."""
    import mydrive.storage.chunkstore as chunkstore

    original = chunkstore.digests_equal
    with planted("receiver-accepts-corrupt"):
        assert chunkstore.digests_equal is not original
    assert chunkstore.digests_equal is original


@pytest.mark.chaos
@pytest.mark.sim
def test_shrink_placement_bug_under_churn_to_a_smaller_case() -> None:
    """The no-full-file bug under churn is found by trying seeds on 6 peers, then shrunk:
    fewer peers or steps, and the shrunk case still fails no-full-file."""
    scenario = find("peer-loss-during-upload")
    plant = "substitute-ignores-no-full-file"
    first = None
    for seed in range(1, 21):
        report = run(scenario, seed, peers=6, plant=plant, small=False)
        if report.violation is not None:
            first = report
            break
    assert first is not None and first.violation is not None, "no seed in 1..20 found it"
    assert "no-full-file" in first.violation.checkers, why(first)
    result = shrink(scenario, SimConfig(seed=first.seed, peers=6), first, plant=plant,
                    max_runs=40)
    assert result.report.violation is not None
    assert "no-full-file" in result.report.violation.checkers, why(result.report)
    assert result.config.peers < 6 or len(result.scenario.steps) < len(scenario.steps), \
        f"nothing shrunk in {result.runs} runs; {why(first)}"


@pytest.mark.chaos
@pytest.mark.sim
def test_shrink_corrupt_receiver_drops_steps_and_bytes() -> None:
    """A receiver that accepts corrupt segments is found on 'corruption' and shrunk to a
    single put of a smaller file; the shrunk case replays to the same failure."""
    scenario = find("corruption")
    config = SimConfig(seed=7, **SMALL)
    first = run(scenario, 7, plant="receiver-accepts-corrupt")
    assert first.violation is not None, why(first)
    result = shrink(scenario, config, first, plant="receiver-accepts-corrupt", max_runs=60)
    shrunk = result.scenario
    assert [s.do for s in shrunk.steps] == ["put"], dump(shrunk)
    assert int(shrunk.steps[0].get("size_bytes")) < 300_001
    again = run(sim_parse(__import__("tomllib").loads(dump(shrunk))), 7,
                peers=result.config.peers, plant="receiver-accepts-corrupt")
    assert again.trace_hash == result.report.trace_hash, "the written case replays exactly"
