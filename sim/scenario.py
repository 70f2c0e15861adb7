"""Scenario files for the simulator: the chaos catalog, plus a few actions only it can do.

Every file of chaos/scenarios/ is read with the harness's own parser (``chaos.scenario``),
unchanged. The simulator's own scenarios (sim/scenarios/) may also use the actions a real
cluster can't perform on demand (``steps.SIM_ONLY_ACTIONS``: a power loss that takes unsynced
writes, a lost disk, a full disk); they are checked here and the rest of the file goes
through the harness's parser, so both formats stay one. ``dump`` writes a scenario back as
TOML (how a shrunk case is saved); a file without simulator-only steps runs on a real
cluster too (``python -m chaos run FILE``).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from chaos import scenario as chaos_scenario
from chaos.scenario import Scenario, ScenarioError, Step
from sim.steps import SIM_ONLY_ACTIONS

SIM_SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"


def parse(doc: dict[str, Any], where: str = "<scenario>", path: Path | None = None) -> Scenario:
    """The harness's parser, with the simulator-only steps checked here."""
    raw_steps = list(doc.get("step", []))
    own: dict[int, Step] = {}
    passed: list[dict[str, Any]] = []
    for n, raw in enumerate(raw_steps):
        do = raw.get("do") if isinstance(raw, dict) else None
        if do in SIM_ONLY_ACTIONS and do not in chaos_scenario.ACTIONS:
            args = {k: v for k, v in raw.items() if k != "do"}
            extra = set(args) - SIM_ONLY_ACTIONS[do]
            if extra:
                raise ScenarioError(f"{where}: step {n + 1} ({do}): unknown key(s) "
                                    f"{sorted(extra)}")
            if args.get("when", "now") not in chaos_scenario.TRIGGERS:
                raise ScenarioError(f"{where}: step {n + 1}: when must be one of "
                                    f"{chaos_scenario.TRIGGERS}")
            own[n] = Step(do, args)
            passed.append({"do": "sleep", "ms": 0})  # a placeholder the parser accepts
        else:
            passed.append(raw)
    parsed = chaos_scenario.parse({**doc, "step": passed}, where, path)
    steps = tuple(own.get(n, step) for n, step in enumerate(parsed.steps))
    return Scenario(name=parsed.name, summary=parsed.summary,
                    corrupt_upload_rate=parsed.corrupt_upload_rate,
                    corrupt_serve_rate=parsed.corrupt_serve_rate,
                    corrupt_serve_peers=parsed.corrupt_serve_peers, steps=steps, path=path)


def load(path: Path) -> Scenario:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
    scenario = parse(doc, str(path), path)
    if scenario.name != path.stem:
        raise ScenarioError(f"{path}: name {scenario.name!r} must match the file name")
    return scenario


def catalog() -> list[Scenario]:
    """The harness's catalog, then the simulator's own scenarios."""
    return chaos_scenario.catalog() + [load(p) for p in sorted(SIM_SCENARIO_DIR.glob("*.toml"))]


def find(name_or_path: str) -> Scenario:
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return load(path)
    for directory in (chaos_scenario.SCENARIO_DIR, SIM_SCENARIO_DIR):
        candidate = directory / f"{name_or_path}.toml"
        if candidate.exists():
            return load(candidate)
    names = ", ".join(s.name for s in catalog())
    raise ScenarioError(f"no scenario {name_or_path!r}; known: {names}, or 'random'")


def uses_sim_only(scenario: Scenario) -> bool:
    """Whether a real cluster can't run it: the harness's own parser refuses it."""
    try:
        chaos_scenario.parse(tomllib.loads(dump(scenario)))
    except ScenarioError:
        return True
    return False


# ---- writing TOML (a shrunk case) --------------------------------------------------------------
def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list | tuple):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{k} = {_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"can't write {type(v).__name__} as TOML")


def _rate(rate: tuple[float, float]) -> str:
    lo, hi = rate
    return _value(lo) if lo == hi else _value([lo, hi])


def dump(scenario: Scenario, *, comment: str = "") -> str:
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [f"name = {_value(scenario.name)}", f"summary = {_value(scenario.summary)}",
              f"corrupt_upload_rate = {_rate(scenario.corrupt_upload_rate)}",
              f"corrupt_serve_rate = {_rate(scenario.corrupt_serve_rate)}",
              f"corrupt_serve_peers = {_value(scenario.corrupt_serve_peers)}"]
    for step in scenario.steps:
        lines += ["", "[[step]]", f"do = {_value(step.do)}"]
        lines += [f"{k} = {_value(v)}" for k, v in step.args.items()]
    return "\n".join(lines) + "\n"
