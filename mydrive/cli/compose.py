"""``mydrive compose generate --peers N OUT/``: N peers as one docker compose project
(mydrive.node.compose; docs/deploy.md "N peers as one compose project")."""

from __future__ import annotations

from pathlib import Path

import click

from .common import handle_errors, json_option, print_json


@click.group()
def compose() -> None:
    """Docker compose projects of N peers (docs/deploy.md)."""


@compose.command("generate")
@click.argument("out", type=click.Path(path_type=Path, file_okay=False))
@click.option("--peers", type=int, default=5, show_default=True,
              help="how many peer pods (at least 4: R = 2 replicas without a whole file on "
                   "any peer)")
@click.option("--replicas", type=int, default=2, show_default=True)
@click.option("--name", help="compose project name (default: mydrive-<OUT's name>)")
@click.option("--subnet", help="the project network, a /24 (default: one of 10.219.0.0/16 "
                               "picked by the project name)")
@click.option("--image", help="the mydrive image (default: mydrive:<this version>)")
@json_option
def compose_generate(out: Path, peers: int, replicas: int, name: str | None,
                     subnet: str | None, image: str | None, as_json: bool) -> None:
    """Write OUT/compose.yaml with N peer pods, their PKI and peer directories, and a
    Toxiproxy in front of every peer; then `docker compose up -d --wait` in OUT."""
    from mydrive.node.compose import generate

    with handle_errors():
        project = generate(out, peers=peers, name=name, subnet=subnet, replicas=replicas,
                           image=image)
    if as_json:
        print_json(project.to_json())
        return
    click.echo(f"wrote {project.compose_file} (project {project.name}, network "
               f"{project.subnet}, {len(project.peers)} peers)")
    for p in project.peers:
        click.echo(f"  {p.name:<8} {p.peer_id}  dialed at {p.advertised_address} (Toxiproxy)"
                   f"  UI https://127.0.0.1:{p.ui_port}/  dir {p.directory}")
    click.echo(f"start:  cd {project.root} && docker compose up -d --wait")
    click.echo(f"use:    mydrive user create --peer {project.peers[0].directory} --user NAME")
    click.echo(f"stop:   cd {project.root} && docker compose down -v")
