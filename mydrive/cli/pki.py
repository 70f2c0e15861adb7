"""``mydrive pki init``: the network's certificate authority (TLS between peers)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import handle_errors


@click.group()
def pki() -> None:
    """The network's certificate authority (TLS between peers)."""


@pki.command("init")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option("--name", default="mydrive network", show_default=True)
def pki_init(directory: Path, name: str) -> None:
    """Create a network CA in DIRECTORY (ca.key stays there, 0600; ca.crt is public)."""
    from mydrive.node.pki import CA_KEY, init_network

    with handle_errors():
        cert = init_network(directory, name=name)
        click.echo(f"network CA written: {cert} (keep {directory / CA_KEY} private)")
