"""Run one scenario in the simulator from one seed; report verdicts, trace hash, replay.

Like ``chaos.runner.run_scenario`` but in one process and in virtual time: build the world,
run the steps with the checkers after every one, then (as the harness does) heal the
network, restart every stopped peer and run every checker on the final state. The first
failed check stops the run (a violation): the report then holds the step it followed, the
events that led to it and the command that replays it. Never raises for a broken guarantee,
only for a broken simulator.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from chaos.checkers import Verdict
from chaos.scenario import SCENARIO_DIR, Scenario
from sim import checks
from sim.clock import START_MS
from sim.plants import planted
from sim.steps import StepRunner
from sim.trace import Trace
from sim.world import SimConfig, World

TMPFS = Path("/dev/shm")  # noqa: S108 - a parent for mkdtemp, not a file name
FINAL_DRAIN_MS = 120_000  # at most this much virtual time for scripts left running


@dataclass
class Violation:
    after: str                      # where: "after step 3 (kill)", "at the end", ...
    checkers: list[str]             # the failed checkers, by name
    problems: list[str]
    events_before: list[str]        # the last trace lines before it


@dataclass
class SimReport:
    scenario: str
    scenario_ref: str
    seed: int
    peers: int
    plant: str | None
    config: SimConfig
    owner: str = ""
    victim: str = ""
    rates: dict[str, float] = field(default_factory=dict)
    ops: list[dict[str, Any]] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    violation: Violation | None = None
    trace_hash: str = ""
    events: int = 0
    virtual_ms: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    workdir: str = ""
    trace_lines: list[str] = field(default_factory=list)  # the first events, when kept

    @property
    def ok(self) -> bool:
        return self.violation is None and not any(v.failed for v in self.verdicts)

    @property
    def failed_checkers(self) -> list[str]:
        return sorted({v.checker for v in self.verdicts if v.failed})

    @property
    def replay(self) -> str:
        return replay_command(self.scenario_ref, self.config, self.plant)

    @property
    def events_per_s(self) -> float:
        return self.events / self.wall_s if self.wall_s > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        v = self.violation
        return {"scenario": self.scenario, "seed": self.seed, "peers": self.peers,
                "plant": self.plant, "ok": self.ok, "owner": self.owner,
                "victim": self.victim, "rates": self.rates, "operations": self.ops,
                "checkers": [x.to_json() for x in self.verdicts],
                "violation": None if v is None else {
                    "after": v.after, "checkers": v.checkers, "problems": v.problems[:20],
                    "events_before": v.events_before},
                "trace_hash": self.trace_hash, "events": self.events,
                "virtual_ms": self.virtual_ms, "wall_s": round(self.wall_s, 3),
                "cpu_s": round(self.cpu_s, 3), "events_per_s": round(self.events_per_s),
                "events_per_cpu_s": round(self.events / self.cpu_s) if self.cpu_s > 0 else 0,
                "replay": self.replay}


def replay_command(scenario_ref: str, config: SimConfig, plant: str | None) -> str:
    parts = ["python -m sim run", scenario_ref, f"--peers {config.peers}",
             f"--seed {config.seed}"]
    default = SimConfig()
    if config.chunk_size_bytes != default.chunk_size_bytes:
        parts.append(f"--chunk-size {config.chunk_size_bytes}")
    if config.segment_size_bytes != default.segment_size_bytes:
        parts.append(f"--segment-size {config.segment_size_bytes}")
    if config.link.latency_ms != default.link.latency_ms:
        parts.append(f"--latency-ms {config.link.latency_ms}")
    if config.link.loss_rate != default.link.loss_rate:
        parts.append(f"--loss {config.link.loss_rate}")
    if plant:
        parts.append(f"--plant {plant}")
    return " ".join(parts)


def scenario_ref_of(scenario: Scenario) -> str:
    if scenario.path is not None and scenario.path.parent != SCENARIO_DIR:
        return str(scenario.path)
    return scenario.name


def work_root() -> Path:
    """tmpfs when there is one: the chunk store fsyncs, which costs nothing there."""
    return TMPFS if TMPFS.is_dir() else Path(tempfile.gettempdir())


def run_scenario(scenario: Scenario, config: SimConfig, *, plant: str | None = None,
                 keep: bool = False, keep_events: int = 0,
                 scenario_ref: str | None = None) -> SimReport:
    """Run ``scenario`` from ``config.seed``; the report says what held."""
    t0, cpu0 = time.perf_counter(), time.process_time()
    work = Path(tempfile.mkdtemp(prefix=f"mydrive-sim-{scenario.name}-", dir=work_root()))
    trace = Trace(keep_events=keep_events)
    report = SimReport(scenario=scenario.name, scenario_ref=scenario_ref or
                       scenario_ref_of(scenario), seed=config.seed, peers=config.peers,
                       plant=plant, config=config)
    try:
        with planted(plant):
            world = World(scenario.name, config, work,
                          corrupt_upload_rate=scenario.corrupt_upload_rate,
                          corrupt_serve_rate=scenario.corrupt_serve_rate,
                          corrupt_serve_peers=scenario.corrupt_serve_peers, trace=trace)
            report.owner, report.victim, report.rates = world.owner, world.victim, world.rates

            def check(label: str) -> bool:
                verdicts = checks.step_verdicts(world)
                if "mid-run" in label:
                    verdicts.append(checks.downloads_verdict(world))
                return _judge(world, report, verdicts, label)

            runner = StepRunner(world, check)
            finished = runner.run(scenario.steps)
            if finished:
                # The harness's end: every fault undone, every peer running, then check all.
                world.clock.run_all(limit_ns=FINAL_DRAIN_MS * 1_000_000)
                world.heal()
                for name in world.names:
                    if not world.peers[name].running():
                        world.resume(name)
                if any(pending for _, pending in world.removed.values()):
                    world.run_op(world.new_op("gc", "", "ok"))  # ``mydrive gc``, all up
                verdicts = checks.step_verdicts(world) + [checks.downloads_verdict(world)]
                _judge(world, report, verdicts, "at the end (healed, every peer running)")
            report.ops = [op.to_json() for op in world.ops.values()]
            world.close()
            report.virtual_ms = world.clock.now_ms() - START_MS
    finally:
        report.events = trace.count
        report.trace_hash = trace.hash_hex
        report.wall_s = time.perf_counter() - t0
        report.cpu_s = time.process_time() - cpu0
        report.trace_lines = trace.kept
        if keep:
            report.workdir = str(work)
        else:
            checks.cleanup(work)
    return report


def _judge(world: World, report: SimReport, verdicts: list[Verdict], label: str) -> bool:
    report.verdicts = verdicts
    for v in verdicts:
        world.note("sim.check", checker=v.checker, verdict=v.verdict,
                   problems=len(v.problems))
    failed = [v for v in verdicts if v.failed]
    if not failed:
        return True
    report.violation = Violation(
        after=label, checkers=sorted(v.checker for v in failed),
        problems=[p for v in failed for p in v.problems][:50],
        events_before=list(world.trace.tail))
    world.note("sim.violation", after=label, checkers=tuple(sorted(v.checker for v in failed)))
    return False
