"""``mydrive serve sender|receiver|ui|sftp DIR``: run one service of a peer in the foreground
(what ``cluster up``, the chaos test-bed and each container start)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from .common import fault_hooks, fault_plan_option, handle_errors


@click.command()
@click.argument("service", type=click.Choice(["sender", "receiver", "ui", "sftp"]))
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False, exists=True))
@click.option("--server", "ui_server", type=click.Choice(["auto", "gunicorn", "waitress"]),
              envvar="MYDRIVE_UI_SERVER", default="auto", show_default=True,
              help="ui only: WSGI server (auto: gunicorn on Linux/macOS, waitress elsewhere)")
@fault_plan_option
def serve(service: str, directory: Path, ui_server: str, fault_plan: Path | None) -> None:
    """Run one service of a peer in the foreground (ui: the browser UI on loopback)."""
    logging.getLogger().setLevel(logging.INFO)
    if service == "sftp":  # docs/sftp.md
        from .sftp import run_sftp

        run_sftp(directory)
        return
    if service == "ui":
        from mydrive.ui.serve import run as run_ui

        with handle_errors():
            run_ui(directory, server=ui_server)
        return
    from mydrive.node.serve import serve as run

    with handle_errors():
        run(service, directory, faults=fault_hooks(fault_plan))
