"""The test-bed's command line: ``python -m chaos list|run`` (docs/chaos.md).

It lives outside the product: the mydrive wheel carries neither this package nor its
commands; a source checkout runs it next to the product it tests.
"""

from __future__ import annotations

import json
import sys

import click

from chaos.compose import ComposeError, ComposeUnavailable
from chaos.netns import NetnsUnavailable
from chaos.runner import format_report, run_scenario
from chaos.scenario import ScenarioError, catalog, find
from chaos.toxiproxy import ToxiproxyError

EXIT_BAD_INPUT = 2


def _print_json(doc: object) -> None:
    click.echo(json.dumps(doc, indent=2, sort_keys=True))


@click.group()
def cli() -> None:
    """Run fault scenarios on a local cluster and check the guarantees (docs/chaos.md)."""


@cli.command("list")
@click.option("--json", "as_json", is_flag=True)
def chaos_list(as_json: bool) -> None:
    """Show the scenario catalog."""
    scenarios = catalog()
    if as_json:
        _print_json({"scenarios": [{"name": s.name, "summary": s.summary,
                                    "steps": len(s.steps)} for s in scenarios]})
        return
    for s in scenarios:
        click.echo(f"{s.name:<28} {s.summary}")


@cli.command("run")
@click.argument("scenario")
@click.option("--peers", type=int, default=5, show_default=True)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--json", "as_json", is_flag=True)
@click.option("--keep", is_flag=True, help="keep the work directory even when all passed")
@click.option("--backend", type=click.Choice(["local", "netns", "compose"]), default="local",
              show_default=True,
              help="local: processes on loopback; netns: each peer in its own network "
                   "namespace (root on Linux); compose: a generated docker compose project "
                   "(scripts/containers.sh makes the engine and images)")
def chaos_run(scenario: str, peers: int, seed: int, as_json: bool, keep: bool,
              backend: str) -> None:
    """Run SCENARIO (a catalog name or a .toml file) from SEED; exit 1 if a guarantee broke."""
    if not 3 <= peers <= 64:
        click.echo(f"error: --peers must be between 3 and 64, got {peers}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if backend == "compose" and peers < 4:
        click.echo(f"error: the compose backend needs at least 4 peers, got {peers}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    try:
        report = run_scenario(find(scenario), peers=peers, seed=seed, keep=keep,
                              backend=backend)
    except (ScenarioError, ToxiproxyError, NetnsUnavailable, ComposeUnavailable,
            ComposeError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_BAD_INPUT)
    if as_json:
        _print_json(report.to_json())
    else:
        click.echo(format_report(report))
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    cli(prog_name="python -m chaos")
