"""The scenario format and catalog (quick: no processes)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from chaos.__main__ import cli as chaos_cli
from chaos.runner import derive_seed
from chaos.scenario import ScenarioError, catalog, parse

REQUIRED = {"peer-loss-during-upload", "peer-loss-during-download", "corruption", "slow-peer",
            "flapping-peer", "partition-and-heal", "rolling-restart", "bitrot-one-replica"}


def test_scenario_catalog_covers_the_required_faults() -> None:
    """Every scenario the issue asks for is in the catalog and loads."""
    assert {s.name for s in catalog()} >= REQUIRED


def test_scenario_corruption_rates_span_1_to_20_percent() -> None:
    """The corruption scenario draws its rates from 1-20 %."""
    s = next(s for s in catalog() if s.name == "corruption")
    assert s.corrupt_upload_rate == (0.01, 0.20) and s.corrupt_serve_rate == (0.01, 0.20)


@pytest.mark.parametrize("doc, message", [
    ({"name": "x", "step": [{"do": "explode"}]}, "unknown action"),
    ({"name": "x", "step": [{"do": "kill", "peer": "victim", "wen": "now"}]}, "unknown key"),
    ({"name": "x", "step": [{"do": "put", "file": "a"}]}, "size_bytes"),
    ({"name": "x", "corrupt_upload_rate": 2, "step": [{"do": "heal"}]}, "within [0, 1]"),
    ({"name": "x", "step": []}, "[[step]]"),
])
def test_scenario_parse_rejects_bad_input(doc: dict, message: str) -> None:
    """A malformed scenario fails at load time with a precise message."""
    with pytest.raises(ScenarioError, match=message.replace("[", r"\[").replace("]", r"\]")):
        parse(doc)


def test_scenario_seed_derivation_is_stable() -> None:
    """The same (scenario, seed) always drives the same random choices."""
    assert derive_seed("corruption", 7) == derive_seed("corruption", 7)
    assert derive_seed("corruption", 7) != derive_seed("corruption", 8)


def test_chaos_cli_list_json() -> None:
    """`python -m chaos list --json` shows the catalog."""
    result = CliRunner().invoke(chaos_cli, ["list", "--json"])
    assert result.exit_code == 0, result.output
    assert {s["name"] for s in json.loads(result.output)["scenarios"]} >= REQUIRED
