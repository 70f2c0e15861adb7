"""Scenarios as data: TOML files in chaos/scenarios/ (format in docs/chaos.md).

A scenario names its corruption rates (a number, or a [low, high] range the seed draws
from) and a list of steps; each step is one action (``do = "put"``, ``"kill"``, ...) with
its arguments. Peers are named by role: ``owner`` and ``victim`` (both drawn from the seed),
``peer-N``, or ``*`` for every peer. Loading checks every step, so a typo fails at once.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCENARIO_DIR = Path(__file__).resolve().parent / "scenarios"
MAX_STEPS = 200
MAX_FILE_BYTES = 64 * 1024 * 1024

# action -> allowed keys (besides "do")
ACTIONS: dict[str, set[str]] = {
    "put": {"file", "size_bytes", "background", "expect"},
    "get": {"file", "background", "expect"},
    "wait": {"op"},
    "kill": {"peer", "service", "when", "op", "wipe"},
    "kill_op": {"op", "when"},
    "resume": {"peer"},
    "restart": {"peer", "graceful"},
    "rolling_restart": {"pause_ms", "graceful"},
    "isolate": {"peer"},
    "cut": {"source", "target"},
    "down": {"peer"},
    "up": {"peer"},
    "flap": {"peer", "times", "down_ms", "up_ms", "mode"},
    "toxic": {"peer", "source", "type", "stream", "service", "attributes"},
    "heal": set(),
    "sleep": {"ms"},
    "bitrot": {"peer", "chunks"},
    "check": set(),
    "repair": {"dead_after_s", "expect"},
}
TRIGGERS = ("now", "receiving", "downloading")
EXPECT = ("ok", "any", "killed")


class ScenarioError(ValueError):
    """A scenario file that does not follow the format."""


@dataclass(frozen=True)
class Step:
    do: str
    args: dict[str, Any]

    def get(self, key: str, default: Any = None) -> Any:
        return self.args.get(key, default)


@dataclass(frozen=True)
class Scenario:
    name: str
    summary: str
    corrupt_upload_rate: tuple[float, float]
    corrupt_serve_rate: tuple[float, float]
    corrupt_serve_peers: str
    steps: tuple[Step, ...]
    path: Path | None = None


def _rate(doc: dict[str, Any], key: str, where: str) -> tuple[float, float]:
    raw = doc.get(key, 0.0)
    lo, hi = (raw, raw) if isinstance(raw, int | float) else tuple(raw)
    if not 0.0 <= float(lo) <= float(hi) <= 1.0:
        raise ScenarioError(f"{where}: {key} must be a rate or [low, high] within [0, 1]")
    return float(lo), float(hi)


def parse(doc: dict[str, Any], where: str = "<scenario>", path: Path | None = None) -> Scenario:
    known = {"name", "summary", "corrupt_upload_rate", "corrupt_serve_rate",
             "corrupt_serve_peers", "step"}
    unknown = set(doc) - known
    if unknown:
        raise ScenarioError(f"{where}: unknown key(s) {sorted(unknown)}")
    steps = []
    raw_steps = doc.get("step", [])
    if not raw_steps or len(raw_steps) > MAX_STEPS:
        raise ScenarioError(f"{where}: needs 1..{MAX_STEPS} [[step]] tables")
    for n, raw in enumerate(raw_steps, 1):
        do = raw.get("do")
        if do not in ACTIONS:
            raise ScenarioError(f"{where}: step {n}: unknown action {do!r}; one of "
                                f"{', '.join(sorted(ACTIONS))}")
        args = {k: v for k, v in raw.items() if k != "do"}
        extra = set(args) - ACTIONS[do]
        if extra:
            raise ScenarioError(f"{where}: step {n} ({do}): unknown key(s) {sorted(extra)}")
        if args.get("when", "now") not in TRIGGERS:
            raise ScenarioError(f"{where}: step {n}: when must be one of {TRIGGERS}")
        if args.get("expect", "ok") not in EXPECT:
            raise ScenarioError(f"{where}: step {n}: expect must be one of {EXPECT}")
        if do == "put" and not 0 < int(args.get("size_bytes", 0)) <= MAX_FILE_BYTES:
            raise ScenarioError(f"{where}: step {n}: put needs 0 < size_bytes <= "
                                f"{MAX_FILE_BYTES}")
        steps.append(Step(do, args))
    serve_peers = str(doc.get("corrupt_serve_peers", "victim"))
    if serve_peers not in ("victim", "*"):
        raise ScenarioError(f"{where}: corrupt_serve_peers must be 'victim' or '*'")
    return Scenario(name=str(doc.get("name", "")), summary=str(doc.get("summary", "")),
                    corrupt_upload_rate=_rate(doc, "corrupt_upload_rate", where),
                    corrupt_serve_rate=_rate(doc, "corrupt_serve_rate", where),
                    corrupt_serve_peers=serve_peers, steps=tuple(steps), path=path)


def load(path: Path) -> Scenario:
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: {exc}") from exc
    scenario = parse(doc, str(path), path)
    if scenario.name != path.stem:
        raise ScenarioError(f"{path}: name {scenario.name!r} must match the file name")
    return scenario


def catalog(directory: Path = SCENARIO_DIR) -> list[Scenario]:
    return [load(p) for p in sorted(directory.glob("*.toml"))]


def find(name_or_path: str) -> Scenario:
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        return load(path)
    candidate = SCENARIO_DIR / f"{name_or_path}.toml"
    if not candidate.exists():
        names = ", ".join(s.name for s in catalog())
        raise ScenarioError(f"no scenario {name_or_path!r}; known: {names}")
    return load(candidate)
