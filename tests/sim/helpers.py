"""Shared helpers for the simulator's tests: run a scenario and say how to replay it."""

from __future__ import annotations

from typing import Any

from chaos.scenario import Scenario, parse
from sim.runner import SimReport, run_scenario
from sim.scenario import parse as sim_parse
from sim.world import SimConfig

# Small sizes keep the quick tests quick: 4 segments per chunk.
SMALL = {"chunk_size_bytes": 64 * 1024, "segment_size_bytes": 16 * 1024}


def scenario_of(name: str, steps: list[dict[str, Any]], **top: Any) -> Scenario:
    """A scenario from step dicts (the harness's parser; simulator-only steps allowed)."""
    doc = {"name": name, "step": steps, **top}
    try:
        return parse(doc)
    except ValueError:
        return sim_parse(doc)


def run(scenario: Scenario, seed: int, *, peers: int = 5, plant: str | None = None,
        small: bool = True, **config: Any) -> SimReport:
    cfg = SimConfig(peers=peers, seed=seed, **({**SMALL, **config} if small else config))
    return run_scenario(scenario, cfg, plant=plant)


def why(report: SimReport) -> str:
    """What a failed assertion prints: the seed, the replay command and the violation."""
    v = report.violation
    text = f"seed {report.seed}; replay: {report.replay}"
    if v is not None:
        text += f"\nviolation {v.after}: {v.checkers}\n" + "\n".join(v.problems[:10])
        text += "\nevents before it:\n" + "\n".join(v.events_before[-15:])
    return text
