"""The simulator's command line: ``python -m sim run|scenario|replay|catalog|
check-determinism|list|fleet`` (docs/simulator.md).

Like ``python -m chaos`` it lives outside the product: the wheel carries neither. Every run
prints its trace hash; a failed run prints its replay command, the events before the
violation and, unless ``--no-shrink``, a shrunk case written as a scenario file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from chaos.scenario import Scenario, ScenarioError
from sim import scenario as sim_scenario
from sim.generate import RANDOM_NAME, generate
from sim.network import LinkSpec
from sim.plants import PLANTS
from sim.report import format_report
from sim.runner import SimReport, run_scenario
from sim.shrink import DEFAULT_MAX_RUNS, put_bytes, shrink
from sim.world import SimConfig

EXIT_FAILED, EXIT_BAD_INPUT = 1, 2
ROOT = Path(__file__).resolve().parent.parent
MAX_SEEDS = 100_000


def _print_json(doc: object) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


def parse_seeds(text: str) -> list[int]:
    """``1-20``, ``3``, ``1,4,9`` or a mix (``1-5,9``)."""
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            lo, hi = part.split("-", 1)
            seeds.extend(range(int(lo), int(hi) + 1))
        elif part.strip():
            seeds.append(int(part))
    if not seeds or len(seeds) > MAX_SEEDS:
        raise click.BadParameter(f"give 1..{MAX_SEEDS} seeds, like 1-20 or 1,4,9")
    return seeds


def resolve_scenario(name: str, seed: int, peers: int) -> Scenario:
    if name == RANDOM_NAME:
        return generate(seed, peers)
    return sim_scenario.find(name)


def _config(peers: int, seed: int, chunk_size: int, segment_size: int, latency_ms: float,
            loss: float) -> SimConfig:
    if not 3 <= peers <= 64:
        raise click.BadParameter(f"--peers must be between 3 and 64, got {peers}")
    return SimConfig(peers=peers, seed=seed, chunk_size_bytes=chunk_size,
                     segment_size_bytes=segment_size,
                     link=LinkSpec(latency_ms=latency_ms, loss_rate=loss))


def run_options(f: Any) -> Any:
    default = SimConfig()
    options = [
        click.option("--peers", type=int, default=5, show_default=True),
        click.option("--seed", type=int, default=1, show_default=True),
        click.option("--json", "as_json", is_flag=True, help="the report as JSON (with the "
                     "trace hash and the checkers' verdicts)"),
        click.option("--plant", type=click.Choice(sorted(PLANTS)), default=None,
                     help="run with a bug planted on purpose (shows a checker failing)"),
        click.option("--chunk-size", type=int, default=default.chunk_size_bytes,
                     show_default=True),
        click.option("--segment-size", type=int, default=default.segment_size_bytes,
                     show_default=True),
        click.option("--latency-ms", type=float, default=default.link.latency_ms,
                     show_default=True, help="one-way latency of every healthy link"),
        click.option("--loss", type=float, default=default.link.loss_rate,
                     show_default=True, help="packet loss per message (TCP retransmits)"),
        click.option("--trace-out", type=click.Path(path_type=Path), default=None,
                     help="write the run's events as JSON lines"),
        click.option("--keep", is_flag=True, help="keep the peers' directories"),
        click.option("--shrink/--no-shrink", default=True, show_default=True,
                     help="on a violation, look for a smaller case that fails alike"),
        click.option("--shrink-dir", type=click.Path(path_type=Path),
                     default=Path(tempfile.gettempdir()) / "mydrive-sim-shrunk",
                     show_default=True, help="where a shrunk case is written"),
        click.option("--max-shrink-runs", type=int, default=DEFAULT_MAX_RUNS,
                     show_default=True),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@click.group()
def cli() -> None:
    """Deterministic simulator of the real engine (docs/simulator.md)."""


def _run(scenario_name: str, *, peers: int, seed: int, as_json: bool, plant: str | None,
         chunk_size: int, segment_size: int, latency_ms: float, loss: float,
         trace_out: Path | None, keep: bool, shrink_: bool, shrink_dir: Path,
         max_shrink_runs: int) -> None:
    try:
        config = _config(peers, seed, chunk_size, segment_size, latency_ms, loss)
        scenario = resolve_scenario(scenario_name, seed, peers)
    except (ScenarioError, click.BadParameter) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    ref = scenario_name if scenario_name == RANDOM_NAME else None
    report = run_scenario(scenario, config, plant=plant, keep=keep,
                          keep_events=2_000_000 if trace_out else 0, scenario_ref=ref)
    if trace_out is not None:
        trace_out.write_text("".join(line + "\n" for line in report.trace_lines))
    doc = report.to_json()
    if not as_json:
        click.echo(format_report(report))
    if not report.ok and shrink_:
        doc["shrunk"] = _shrink(scenario, config, report, plant, shrink_dir, max_shrink_runs,
                                quiet=as_json)
    if as_json:
        _print_json(doc)
    sys.exit(0 if report.ok else EXIT_FAILED)


def _shrink(scenario: Scenario, config: SimConfig, report: SimReport, plant: str | None,
            shrink_dir: Path, max_runs: int, *, quiet: bool) -> dict[str, Any]:
    say = (lambda text: None) if quiet else (lambda text: click.echo(f"  {text}"))
    if not quiet:
        click.echo("shrinking (fewer peers, steps, faults, bytes that still fail alike)...")
    result = shrink(scenario, config, report, plant=plant, max_runs=max_runs, progress=say)
    out_dir = shrink_dir / f"{scenario.name}-seed{config.seed}"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{scenario.name}.toml"
    replay = (f"python -m sim run {path} --peers {result.config.peers} --seed {config.seed}"
              + (f" --plant {plant}" if plant else ""))
    path.write_text(sim_scenario.dump(result.scenario, comment=(
        f"Shrunk by the simulator from {scenario.name} seed {config.seed} "
        f"({result.original_peers} peers, {result.original_steps} steps); still fails "
        f"{', '.join(result.report.violation.checkers if result.report.violation else [])}.\n"
        f"Replay: {replay}")))
    chaos_cmd = None
    if not sim_scenario.uses_sim_only(result.scenario) and plant is None:
        chaos_cmd = f"python -m chaos run {path} --peers {result.config.peers} " \
                    f"--seed {config.seed}"
    if not quiet:
        click.echo(f"shrunk case: {result.config.peers} peers, {len(result.scenario.steps)} "
                   f"step(s), {put_bytes(result.scenario):,} bytes put (from "
                   f"{result.original_peers} peers, {result.original_steps} steps, "
                   f"{put_bytes(scenario):,} bytes) after {result.runs} runs; written to "
                   f"{path}")
        click.echo(f"replay the shrunk case: {replay}")
        if chaos_cmd:
            click.echo(f"try it on a real cluster: {chaos_cmd}")
        elif plant is None:
            click.echo("(it uses simulator-only steps: no real-cluster equivalent)")
    return {"file": str(path), "peers": result.config.peers,
            "steps": len(result.scenario.steps), "runs": result.runs, "replay": replay,
            "chaos_replay": chaos_cmd, "trace_hash": result.report.trace_hash}


@cli.command("run")
@click.argument("scenario")
@run_options
def sim_run(scenario: str, peers: int, seed: int, as_json: bool, plant: str | None,
            chunk_size: int, segment_size: int, latency_ms: float, loss: float,
            trace_out: Path | None, keep: bool, shrink: bool, shrink_dir: Path,
            max_shrink_runs: int) -> None:
    """Run SCENARIO (a catalog name, a .toml file, or 'random') from SEED; exit 1 if a
    guarantee broke."""
    _run(scenario, peers=peers, seed=seed, as_json=as_json, plant=plant,
         chunk_size=chunk_size, segment_size=segment_size, latency_ms=latency_ms, loss=loss,
         trace_out=trace_out, keep=keep, shrink_=shrink, shrink_dir=shrink_dir,
         max_shrink_runs=max_shrink_runs)


@cli.command("scenario")
@click.argument("name")
@run_options
def sim_scenario_cmd(name: str, peers: int, seed: int, as_json: bool, plant: str | None,
                     chunk_size: int, segment_size: int, latency_ms: float, loss: float,
                     trace_out: Path | None, keep: bool, shrink: bool, shrink_dir: Path,
                     max_shrink_runs: int) -> None:
    """Run the chaos catalog's scenario NAME here (the same file, parser and checkers)."""
    _run(name, peers=peers, seed=seed, as_json=as_json, plant=plant,
         chunk_size=chunk_size, segment_size=segment_size, latency_ms=latency_ms, loss=loss,
         trace_out=trace_out, keep=keep, shrink_=shrink, shrink_dir=shrink_dir,
         max_shrink_runs=max_shrink_runs)


@cli.command("replay")
@click.argument("seed", type=int)
@click.option("--scenario", "scenario_name", default=RANDOM_NAME, show_default=True)
@click.option("--peers", type=int, default=5, show_default=True)
@click.option("--plant", type=click.Choice(sorted(PLANTS)), default=None)
@click.option("--trace-out", type=click.Path(path_type=Path), default=None,
              help="write the events here instead of printing them")
def sim_replay(seed: int, scenario_name: str, peers: int, plant: str | None,
               trace_out: Path | None) -> None:
    """Replay SEED and show every event of it (the whole trace), then the report."""
    config = _config(peers, seed, SimConfig().chunk_size_bytes,
                     SimConfig().segment_size_bytes, SimConfig().link.latency_ms, 0.0)
    scenario = resolve_scenario(scenario_name, seed, peers)
    report = run_scenario(scenario, config, plant=plant, keep_events=2_000_000,
                          scenario_ref=scenario_name if scenario_name == RANDOM_NAME
                          else None)
    if trace_out is not None:
        trace_out.write_text("".join(line + "\n" for line in report.trace_lines))
    else:
        for line in report.trace_lines:
            click.echo(line)
    click.echo(format_report(report))
    sys.exit(0 if report.ok else EXIT_FAILED)


def _scenario_names(which: str) -> list[str]:
    if which == "catalog":
        return [s.name for s in sim_scenario.catalog()]
    return [name.strip() for name in which.split(",") if name.strip()]


@cli.command("hashes", hidden=True)
@click.option("--scenarios", default=RANDOM_NAME)
@click.option("--seeds", default="1-3")
@click.option("--peers", type=int, default=5)
@click.option("--reverse", is_flag=True)
@click.option("--trace-dir", type=click.Path(path_type=Path), default=None)
def sim_hashes(scenarios: str, seeds: str, peers: int, reverse: bool,
               trace_dir: Path | None) -> None:
    """Print {scenario:seed: trace hash} as JSON (one side of check-determinism)."""
    jobs = [(name, seed) for name in _scenario_names(scenarios) for seed in parse_seeds(seeds)]
    out: dict[str, str] = {}
    for name, seed in (reversed(jobs) if reverse else jobs):
        report = run_scenario(resolve_scenario(name, seed, peers), SimConfig(peers=peers,
                              seed=seed), keep_events=2_000_000 if trace_dir else 0,
                              scenario_ref=name)
        out[f"{name}:{seed}"] = report.trace_hash
        if trace_dir is not None:
            trace_dir.mkdir(parents=True, exist_ok=True)
            (trace_dir / f"{name}-{seed}.jsonl").write_text(
                "".join(line + "\n" for line in report.trace_lines))
    _print_json(out)


def determinism_runs(scenarios: str, seeds: str, peers: int,
                     work: Path) -> tuple[dict[str, str], dict[str, str]]:
    """Each (scenario, seed) run twice: in two fresh processes with different hash seeds,
    one taking the seeds in order and one in reverse (state carried from run to run would
    differ). Both write their traces under ``work``."""
    procs = []
    for side, hash_seed, extra in (("a", "1", []), ("b", "2", ["--reverse"])):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed,
               "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "sim", "hashes", "--scenarios", scenarios, "--seeds", seeds,
             "--peers", str(peers), "--trace-dir", str(work / side), *extra],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    outs = []
    for proc in procs:
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise click.ClickException(f"a determinism run failed:\n{err.decode()[-4000:]}")
        outs.append(json.loads(out))
    return outs[0], outs[1]


def first_difference(a: Path, b: Path) -> str:
    lines_a = a.read_text().splitlines()
    lines_b = b.read_text().splitlines()
    for n, (x, y) in enumerate(zip(lines_a, lines_b, strict=False)):
        if x != y:
            return f"event {n}:\n    first:  {x}\n    second: {y}"
    return f"one trace is a prefix of the other ({len(lines_a)} vs {len(lines_b)} events)"


@cli.command("check-determinism")
@click.option("--seeds", default="1-20", show_default=True)
@click.option("--scenarios", default=RANDOM_NAME, show_default=True,
              help="'random', 'catalog', or names separated by commas")
@click.option("--peers", type=int, default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def sim_check_determinism(seeds: str, scenarios: str, peers: int, as_json: bool) -> None:
    """Run each seed twice and fail on any difference in the trace."""
    with tempfile.TemporaryDirectory(prefix="mydrive-sim-det-") as tmp:
        work = Path(tmp)
        first, second = determinism_runs(scenarios, seeds, peers, work)
        differ = sorted(k for k in first if first[k] != second.get(k))
        details = {}
        for key in differ:
            name, seed = key.rsplit(":", 1)
            details[key] = first_difference(work / "a" / f"{name}-{seed}.jsonl",
                                            work / "b" / f"{name}-{seed}.jsonl")
    if as_json:
        _print_json({"runs": len(first), "differ": differ, "hashes": first,
                     "details": details})
    else:
        for key in sorted(first):
            mark = "DIFFERS" if key in differ else "same"
            click.echo(f"  {key:<34} {first[key][:16]}  {mark}")
        for key, text in details.items():
            click.echo(f"{key}: the traces part at {text}")
        click.echo(f"{len(first)} run(s) twice: "
                   + ("identical" if not differ else f"{len(differ)} differ"))
    sys.exit(EXIT_FAILED if differ else 0)


@cli.command("catalog")
@click.option("--seeds", default="1-3", show_default=True)
@click.option("--peers", type=int, default=5, show_default=True)
@click.option("--json", "as_json", is_flag=True)
def sim_catalog(seeds: str, peers: int, as_json: bool) -> None:
    """Every catalog scenario (the chaos harness's and the simulator's) on SEEDS."""
    results = []
    failed = 0
    for scenario in sim_scenario.catalog():
        for seed in parse_seeds(seeds):
            report = run_scenario(scenario, SimConfig(peers=peers, seed=seed))
            failed += not report.ok
            results.append(report.to_json())
            if not as_json:
                click.echo(f"  {'OK  ' if report.ok else 'FAIL'} {scenario.name:<28} seed "
                           f"{seed:<4} {report.trace_hash[:16]} {report.events:>6} events "
                           f"wall {report.wall_s:6.2f} s CPU {report.cpu_s:5.2f} s"
                           + ("" if report.ok else f"  replay: {report.replay}"))
    if as_json:
        _print_json({"runs": results, "failed": failed})
    else:
        click.echo(f"{len(results)} run(s), {failed} failed")
    sys.exit(EXIT_FAILED if failed else 0)


@cli.command("list")
def sim_list() -> None:
    """The scenarios the simulator runs and the bugs it can plant."""
    click.echo("scenarios:")
    for s in sim_scenario.catalog():
        tag = " (sim only)" if sim_scenario.uses_sim_only(s) else ""
        click.echo(f"  {s.name:<28} {s.summary}{tag}")
    click.echo(f"  {RANDOM_NAME:<28} generated from the seed (VOPR style)")
    click.echo("plants (--plant):")
    for name, text in sorted(PLANTS.items()):
        click.echo(f"  {name:<34} {text}")


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(x) for x in text.split(",") if x.strip())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split(",") if x.strip())


@cli.command("fleet")
@click.option("--peers", type=int, default=10_000, show_default=True)
@click.option("--chunks", type=int, default=1_000_000, show_default=True)
@click.option("--days", type=float, default=365.0, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--replicas", type=int, default=3, show_default=True)
@click.option("--churn", "churn_scale", type=float, default=1.0, show_default=True,
              help="every churn rate times this (sim/fleet/churn.py has the model)")
@click.option("--repair", type=click.Choice(["rereplicate", "product", "none"]),
              default="rereplicate", show_default=True,
              help="product: mydrive.engine.repair_policy.plan_repairs")
@click.option("--grace-h", type=float, default=24.0, show_default=True)
@click.option("--plot", "plot_path", type=click.Path(path_type=Path), default=None,
              help="draw availability and losses over the year (PNG)")
@click.option("--json", "as_json", is_flag=True)
def sim_fleet(peers: int, chunks: int, days: float, seed: int, replicas: int,
              churn_scale: float, repair: str, grace_h: float, plot_path: Path | None,
              as_json: bool) -> None:
    """A fleet of PEERS holding CHUNKS through DAYS of churn; durability, availability,
    events per second. Placement is the product's; repair is the chosen policy."""
    from sim.fleet.model import FleetConfig, run_fleet
    from sim.fleet.table import label, plot_series

    config = FleetConfig(peers=peers, chunks=chunks, days=days, seed=seed, replicas=replicas,
                         churn_scale=churn_scale, repair=repair, grace_h=grace_h)
    say = None if as_json else (lambda text: click.echo(f"  {text}"))
    result = run_fleet(config, progress=say)
    if plot_path is not None:
        plot_series([(label(result), result.samples)], plot_path,
                    title=f"{peers:,} peers, {result.chunks:,} chunks")
    if as_json:
        _print_json(result.to_json())
    else:
        doc = result.to_json()
        click.echo(f"fleet: {peers:,} peers, {result.chunks:,} chunks in {result.files:,} "
                   f"files, R={replicas}, {days:g} days, churn x{churn_scale:g} "
                   f"({doc['churn']}), repair {result.policy}, seed {seed}")
        click.echo(f"  files lost: {result.lost_files:,} ({result.lost_chunks:,} chunks); "
                   f"durability {result.durability:.6%}")
        click.echo(f"  availability: mean {result.availability_mean:.6%}, worst sampled day "
                   f"{result.availability_min:.6%}")
        click.echo(f"  repairs: {result.repairs:,} chunk copies "
                   f"({doc['repair_bytes'] / 2**40:.2f} TiB)")
        kinds = ", ".join(f"{k} {v:,}" for k, v in result.events.items() if v)
        click.echo(f"  events: {result.events_total:,} ({kinds})")
        click.echo(f"  time: wall {result.wall_s:.1f} s, CPU {result.cpu_s:.1f} s (placement "
                   f"{result.place_cpu_s:.1f} s CPU); {result.events_per_s:,.0f} events/s wall")
        for check in result.checks:
            click.echo(f"  {'PASS' if check.ok else 'FAIL'}  {check.name}: {check.detail}")
    sys.exit(0 if result.ok else EXIT_FAILED)


@cli.command("fleet-table")
@click.option("--replicas", default="2,3", show_default=True)
@click.option("--peers", default="1000,3000", show_default=True)
@click.option("--churn", default="1,2,4", show_default=True)
@click.option("--repair", "repairs", default="none,rereplicate", show_default=True,
              help="policies, separated by commas: none, rereplicate, product")
@click.option("--chunks-per-peer", type=int, default=100, show_default=True)
@click.option("--days", type=float, default=365.0, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--json-out", type=click.Path(path_type=Path), default=None)
@click.option("--plots-dir", type=click.Path(path_type=Path), default=None)
def sim_fleet_table(replicas: str, peers: str, churn: str, repairs: str, chunks_per_peer: int,
                    days: float, seed: int, json_out: Path | None,
                    plots_dir: Path | None) -> None:
    """Durability and availability per (R, peers, churn rate), with and without repair:
    a markdown table, the results as JSON and PNG plots."""
    from sim.fleet.table import Sweep, markdown, plot, save_json, sweep

    spec = Sweep(replicas=_ints(replicas), peers=_ints(peers), churn=_floats(churn),
                 repair=tuple(r.strip() for r in repairs.split(",") if r.strip()),
                 chunks_per_peer=chunks_per_peer, days=days, seed=seed)
    results = sweep(spec, progress=lambda text: click.echo(f"  {text}", err=True))
    if json_out is not None:
        save_json(results, json_out)
    docs = [r.to_json() for r in results]
    if plots_dir is not None:
        for path in plot(docs, plots_dir):
            click.echo(f"wrote {path}", err=True)
    click.echo(markdown(docs))
    sys.exit(0 if all(r.ok for r in results) else EXIT_FAILED)


@cli.command("fleet-plot", hidden=True)
@click.argument("results", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True)
@click.option("--title", default="the fleet year")
def sim_fleet_plot(results: tuple[Path, ...], out: Path, title: str) -> None:
    """Draw the year of each ``fleet --json`` result file in one PNG."""
    from sim.fleet.table import plot_series

    series = []
    for path in results:
        doc = json.loads(path.read_text())
        name = (f"R={doc['replicas']} {doc['repair']} x{doc['churn_scale']:g} "
                f"{doc['peers']:,} peers")
        series.append((name, [tuple(s) for s in doc["samples"]]))
    plot_series(series, out, title=title)
    click.echo(f"wrote {out}")


@cli.command("fleet-replot", hidden=True)
@click.argument("tables", nargs=-1, type=click.Path(exists=True, path_type=Path))
@click.option("--plots-dir", type=click.Path(path_type=Path), required=True)
def sim_fleet_replot(tables: tuple[Path, ...], plots_dir: Path) -> None:
    """Table and plots again from saved ``fleet-table --json-out`` files (merged)."""
    from sim.fleet.table import markdown, plot

    runs = [run for path in tables for run in json.loads(path.read_text())["runs"]]
    runs.sort(key=lambda r: (r["peers"], r["replicas"], r["churn_scale"], r["repair"]))
    for path in plot(runs, plots_dir):
        click.echo(f"wrote {path}", err=True)
    click.echo(markdown(runs))
