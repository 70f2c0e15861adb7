"""``python -m sim``: the commands, their JSON, the scenario files and the CI runs."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from chaos.scenario import ScenarioError
from chaos.scenario import parse as chaos_parse
from sim.cli import cli, parse_seeds
from sim.generate import generate
from sim.scenario import catalog, dump, find, parse, uses_sim_only

ROOT = Path(__file__).resolve().parents[2]


def test_cli_run_json_has_trace_hash_and_verdicts() -> None:
    """`run SCENARIO --json`: the trace hash, every checker's verdict, the replay command."""
    result = CliRunner().invoke(cli, ["run", "slow-peer", "--seed", "7", "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert len(doc["trace_hash"]) == 64 and doc["events"] > 0 and doc["ok"]
    assert {c["checker"] for c in doc["checkers"]} >= {
        "no-full-file", "resent-equals-corrupted", "owner-only", "no-partial-state",
        "downloads-bit-identical", "recoverable-from-replicas"}
    assert doc["replay"] == "python -m sim run slow-peer --peers 5 --seed 7"


def test_cli_failed_run_prints_replay_events_and_shrunk_case(tmp_path: Path) -> None:
    """A violation prints the seed's replay command, the events before it, and writes a
    shrunk case that the simulator loads back."""
    result = CliRunner().invoke(cli, [
        "run", "corruption", "--seed", "7", "--plant", "receiver-accepts-corrupt",
        "--chunk-size", "65536", "--shrink-dir", str(tmp_path), "--max-shrink-runs", "25"])
    assert result.exit_code == 1, result.output
    out = result.output
    assert "result: FAILED after step 1 (put)" in out
    assert ("replay with: python -m sim run corruption --peers 5 --seed 7 --chunk-size 65536 "
            "--plant receiver-accepts-corrupt") in out
    assert "events before it:" in out and '"kind":"upload.sent"' in out
    written = tmp_path / "corruption-seed7" / "corruption.toml"
    assert written.exists() and f"replay the shrunk case: python -m sim run {written}" in out
    assert find(str(written)).name == "corruption"


def test_cli_exit_2_on_unknown_scenario() -> None:
    """A scenario name that does not exist is a usage error naming the known ones."""
    result = CliRunner().invoke(cli, ["run", "no-such-scenario"])
    assert result.exit_code == 2 and "corruption" in result.output


def test_cli_list_names_catalog_random_and_plants() -> None:
    """`list` shows the chaos catalog, the simulator's own scenarios, random and plants."""
    result = CliRunner().invoke(cli, ["list"])
    assert result.exit_code == 0
    for name in ("corruption", "remove-while-down", "random", "receiver-accepts-corrupt"):
        assert name in result.output


def test_parse_seeds_ranges_and_lists() -> None:
    """Seeds are given as ranges and lists."""
    assert parse_seeds("1-3,7") == [1, 2, 3, 7]


def test_scenario_catalog_includes_every_chaos_file() -> None:
    """The simulator runs the chaos catalog's files themselves, plus its own."""
    names = {s.name for s in catalog()}
    chaos_files = {p.stem for p in (ROOT / "chaos" / "scenarios").glob("*.toml")}
    assert chaos_files <= names and "remove-while-down" in names


def test_scenario_sim_only_actions_parse_here_not_in_chaos() -> None:
    """Power loss, disk loss, rm and gc parse in the simulator; the harness refuses them."""
    doc = {"name": "x", "step": [{"do": "put", "file": "a", "size_bytes": 10},
                                 {"do": "powerloss", "peer": "victim", "when": "receiving"},
                                 {"do": "rm", "file": "a"}, {"do": "gc"}]}
    scenario = parse(doc)
    assert [s.do for s in scenario.steps] == ["put", "powerloss", "rm", "gc"]
    assert uses_sim_only(scenario)
    with pytest.raises(ScenarioError):
        chaos_parse(doc)
    with pytest.raises(ScenarioError, match="unknown key"):
        parse({"name": "x", "step": [{"do": "powerloss", "peer": "victim", "chunks": 1}]})


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_scenario_dump_round_trips(seed: int) -> None:
    """A scenario written as TOML (a shrunk case) parses back to the same steps."""
    scenario = generate(seed, 5)
    again = parse(tomllib.loads(dump(scenario)))
    assert again.steps == scenario.steps, f"seed {seed}"
    assert again.corrupt_serve_rate == scenario.corrupt_serve_rate


def test_generate_same_seed_same_scenario() -> None:
    """`random` with one seed is one fixed scenario; another seed, another."""
    assert generate(5, 5) == generate(5, 5)
    assert generate(5, 5).steps != generate(6, 5).steps


def _sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sim", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=1800)


@pytest.mark.chaos
@pytest.mark.sim
def test_ci_check_determinism_seeds_1_to_20() -> None:
    """CI: each of seeds 1-20 of `random` and the catalog's seed 1, run twice in two fresh
    processes with other hash seeds: identical traces."""
    result = _sim("check-determinism", "--seeds", "1-20", "--json")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert json.loads(result.stdout)["differ"] == []
    result = _sim("check-determinism", "--seeds", "1", "--scenarios", "catalog", "--json")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]


@pytest.mark.chaos
@pytest.mark.sim
def test_ci_catalog_on_fixed_seeds() -> None:
    """CI: every catalog scenario on seeds 1-3 in the simulator: every checker passes."""
    result = _sim("catalog", "--seeds", "1-3")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
