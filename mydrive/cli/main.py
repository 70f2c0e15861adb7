"""The ``mydrive`` command line (entry point ``mydrive.cli.main:main``).

Every command that acts for a user takes ``--peer DIR`` (or MYDRIVE_PEER) and ``--user NAME``;
the passphrase comes from MYDRIVE_PASSPHRASE or a prompt. ``--json`` output is stable and
documented in docs/cli.md. An error ends the process with its class's exit code
(``common.handle_errors``). The commands live in one module per concept:

  peer.py     peer init | render-nginx | doc | register | health
  pki.py      pki init | revoke | install-crl | crl
  serve.py    serve sender|receiver|ui|sftp
  cluster.py  cluster up | status | down
  users.py    user create | rotate-passphrase (and the login of every user command)
  files.py    put, ls, get, inspect, rm, gc, metrics
  sftp.py     serve sftp, user add-ssh-key | ssh-keys | remove-ssh-key (docs/sftp.md)
  check.py    check [--repair], durability run (docs/durability.md)
"""

from __future__ import annotations

import logging

import click

from . import check, cluster, compose, files, kubernetes, peer, pki, serve, sftp, users


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="log more")
def cli(verbose: bool) -> None:
    """mydrive: a peer-to-peer encrypted file store."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


for command in (peer.peer, pki.pki, serve.serve, cluster.cluster, users.user, *files.COMMANDS,
                *check.COMMANDS):
    cli.add_command(command)
sftp.register(users.user)  # user add-ssh-key | ssh-keys | remove-ssh-key
cli.add_command(compose.compose)  # compose generate: N peers as one compose project
cli.add_command(kubernetes.kubernetes)  # kubernetes generate: N peers as manifests


def main() -> None:
    cli(prog_name="mydrive")
