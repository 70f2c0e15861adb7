"""Shrink a failing run to a smaller case that still fails the same way.

Like hypothesis's shrinker, but over a scenario: keep the seed, and try smaller versions of
the case, keeping each one that still fails with (at least one of) the same checkers, until
no smaller version fails or the budget is spent. The passes, repeated while any progresses:

1. fewer peers (the smallest that still fails, from 3 up);
2. fewer steps (delta debugging: drop halves, quarters, ... single steps);
3. fewer faults in flight (corruption rates to 0);
4. smaller files (halve each ``put`` while it still fails);
5. a background operation with no step running beside it moves to the foreground (so the
   case means the same on a real cluster, where the next steps would overlap it).

Every candidate is a full deterministic run, so the result replays exactly. A change of
peers or steps changes what the seed draws downstream; that is fine: the shrunk case is
judged by running it, not by resemblance to the original.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

from chaos.scenario import Scenario, Step
from sim.runner import SimReport, run_scenario
from sim.world import SimConfig

DEFAULT_MAX_RUNS = 120
DEFAULT_MAX_WALL_S = 600.0
MIN_PEERS = 3
MIN_FILE_BYTES = 1


@dataclass
class Shrunk:
    scenario: Scenario
    config: SimConfig
    report: SimReport          # the run of the shrunk case
    runs: int                  # candidates tried
    original_steps: int
    original_peers: int


def _has_company(steps: tuple[Step, ...], index: int) -> bool:
    """Whether harness steps run beside the background operation at ``index``."""
    from sim.steps import CONCURRENT

    following = steps[index + 1:index + 2]
    return bool(following) and following[0].do in CONCURRENT


def put_bytes(scenario: Scenario) -> int:
    return sum(int(s.get("size_bytes", 0)) for s in scenario.steps if s.do == "put")


def _fails_alike(report: SimReport, target: set[str]) -> bool:
    return report.violation is not None and bool(set(report.violation.checkers) & target)


def shrink(scenario: Scenario, config: SimConfig, first: SimReport, *, plant: str | None,
           max_runs: int = DEFAULT_MAX_RUNS, max_wall_s: float = DEFAULT_MAX_WALL_S,
           progress: Callable[[str], None] | None = None) -> Shrunk:
    """A smaller case than (``scenario``, ``config``) whose run fails like ``first``."""
    assert first.violation is not None, "nothing to shrink: the run did not fail"
    target = set(first.violation.checkers)
    deadline = time.monotonic() + max_wall_s
    best_s, best_c, best_r = scenario, config, first
    runs = 0

    def attempt(s: Scenario, c: SimConfig) -> bool:
        nonlocal best_s, best_c, best_r, runs
        if runs >= max_runs or time.monotonic() > deadline or not s.steps:
            return False
        runs += 1
        report = run_scenario(s, c, plant=plant, scenario_ref=first.scenario_ref)
        if _fails_alike(report, target):
            best_s, best_c, best_r = s, c, report
            if progress is not None and report.violation is not None:
                progress(f"run {runs}: {c.peers} peers, {len(s.steps)} step(s), "
                         f"{put_bytes(s):,} bytes put still fail "
                         f"{', '.join(report.violation.checkers)}")
            return True
        return False

    progressed = True
    while progressed and runs < max_runs and time.monotonic() <= deadline:
        progressed = False
        # 1. fewer peers
        for peers in range(MIN_PEERS, best_c.peers):
            if attempt(best_s, replace(best_c, peers=peers)):
                progressed = True
                break
        # 2. fewer steps (ddmin over the step list)
        chunk = max(1, len(best_s.steps) // 2)
        while chunk >= 1:
            i = 0
            removed_any = False
            while i < len(best_s.steps):
                steps = best_s.steps[:i] + best_s.steps[i + chunk:]
                if steps and attempt(replace(best_s, steps=steps), best_c):
                    progressed = removed_any = True
                    continue  # the same i now names the next chunk
                i += chunk
            if not removed_any:
                chunk //= 2
        # 3. no corruption in flight
        none = (0.0, 0.0)
        if best_s.corrupt_upload_rate != none and attempt(
                replace(best_s, corrupt_upload_rate=none), best_c):
            progressed = True
        if best_s.corrupt_serve_rate != none and attempt(
                replace(best_s, corrupt_serve_rate=none), best_c):
            progressed = True
        # 4. smaller files
        for index, step in enumerate(best_s.steps):
            while step.do == "put" and int(step.get("size_bytes", 0)) > MIN_FILE_BYTES:
                smaller = Step("put", {**step.args,
                                       "size_bytes": max(MIN_FILE_BYTES,
                                                         int(step.get("size_bytes")) // 2)})
                steps = best_s.steps[:index] + (smaller,) + best_s.steps[index + 1:]
                if not attempt(replace(best_s, steps=steps), best_c):
                    break
                progressed = True
                step = smaller
        # 5. background operations with nothing running beside them: in the foreground (a
        # real cluster would otherwise run the next steps while they still run)
        for index, step in enumerate(best_s.steps):
            if step.do in ("put", "get") and step.get("background", False) and \
                    not _has_company(best_s.steps, index):
                args = {k: v for k, v in step.args.items() if k != "background"}
                rest = list(best_s.steps[index + 1:])
                if rest and rest[0].do == "wait":
                    rest = rest[1:]
                steps = best_s.steps[:index] + (Step(step.do, args),) + tuple(rest)
                if attempt(replace(best_s, steps=steps), best_c):
                    progressed = True
                    break
    return Shrunk(scenario=best_s, config=best_c, report=best_r, runs=runs,
                  original_steps=len(scenario.steps), original_peers=config.peers)
