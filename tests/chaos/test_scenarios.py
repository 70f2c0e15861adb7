"""Every catalog scenario on a real 5-peer cluster behind Toxiproxy: all guarantees hold."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.runner import format_report, run_scenario
from chaos.scenario import catalog, find, parse
from tests.chaos.conftest import CI_PEERS

SCENARIOS = [s.name for s in catalog()]


@pytest.mark.chaos
@pytest.mark.parametrize("name", SCENARIOS)
def test_chaos_scenario_guarantees_hold(name: str, chaos_seed: int,
                                        toxiproxy_binary: str) -> None:
    """After the scenario every checker passes (or says why it could not judge)."""
    report = run_scenario(find(name), peers=CI_PEERS, seed=chaos_seed)
    text = format_report(report)
    print(text)
    assert report.ok, f"seed {chaos_seed} failed; replay: {report.replay}\n{text}"
    assert {v.checker for v in report.verdicts} >= {
        "no-full-file", "resent-equals-corrupted", "downloads-bit-identical", "owner-only",
        "no-partial-state"}
    assert all(v.verdict != "skip" for v in report.verdicts), text


@pytest.mark.chaos
def test_chaos_run_reports_failure_with_replay_command(tmp_path: Path,
                                                       toxiproxy_binary: str) -> None:
    """A scenario whose operation fails is reported as failed with the command replaying it."""
    scenario = parse({"name": "owner-cut-off", "step": [
        {"do": "isolate", "peer": "owner"},
        {"do": "put", "file": "a.bin", "size_bytes": 100_000}]})
    report = run_scenario(scenario, peers=4, seed=5, workdir=tmp_path / "run")
    assert not report.ok
    assert "python -m chaos run owner-cut-off --peers 4 --seed 5" in format_report(report)


@pytest.mark.chaos
def test_chaos_cli_run_json(toxiproxy_binary: str) -> None:
    """`python -m chaos run --json` prints a report with faults, checkers, accounting, timings."""
    proc = subprocess.run([sys.executable, "-m", "chaos", "run", "bitrot-one-replica",
                           "--peers", "4", "--seed", "3", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["ok"] and doc["faults"] and doc["operations"] and doc["timings_s"]
    assert doc["replay"] == "python -m chaos run bitrot-one-replica --peers 4 --seed 3"
    assert {c["verdict"] for c in doc["checkers"]} == {"pass"}
