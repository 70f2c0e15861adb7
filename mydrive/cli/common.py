"""What every command module of the CLI shares: how errors end the process, JSON output,
the common options, and the test-bed's fault switch.

An error that reaches a command ends the process with ``error: <message>`` on stderr and
the exit code of its class; the table of exit codes is the ``exit_code`` of each class in
mydrive/errors.py (one place), listed for users in docs/cli.md.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from mydrive.errors import MydriveError
from mydrive.runtime.faults import NO_FAULTS, FaultHooks


@contextmanager
def handle_errors() -> Iterator[None]:
    """Turn a MydriveError into its message on stderr and its exit code."""
    try:
        yield
    except MydriveError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(exc.exit_code)


def print_json(data: Any) -> None:
    """The stable ``--json`` output: sorted keys, indented (docs/cli.md)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True))


peer_option = click.option("--peer", "peer_dir", envvar="MYDRIVE_PEER", required=True,
                           type=click.Path(path_type=Path, file_okay=False),
                           help="peer directory to act on (or MYDRIVE_PEER)")
user_option = click.option("--user", "user", envvar="MYDRIVE_USER", required=True,
                           help="user name (or MYDRIVE_USER)")
json_option = click.option("--json", "as_json", is_flag=True)

fault_plan_option = click.option(
    "--fault-plan", type=click.Path(path_type=Path, dir_okay=False, exists=True), hidden=True,
    help="test-bed only: corrupt segments as this seeded plan (JSON) says")


def fault_hooks(fault_plan: Path | None) -> FaultHooks:
    """The hooks for ``--fault-plan``: seeded faults when the test-bed asks, else none."""
    if fault_plan is None:
        return NO_FAULTS
    from mydrive.testing.faults import FaultPlan, SeededFaults

    return SeededFaults(FaultPlan.from_file(fault_plan))
