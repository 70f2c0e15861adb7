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
  jobs.py     jobs, jobs cancel (and following a job for get and put)
  sftp.py     serve sftp, user add-ssh-key | ssh-keys | remove-ssh-key (docs/sftp.md)
  check.py    check [--repair], durability run (docs/durability.md)
  compose.py  compose generate;  kubernetes.py  kubernetes generate

A command's module is imported only when that command runs (or ``--help`` lists them all):
every CLI start pays for the command it runs, not for all of them (docs/cli.md, start-up).
"""

from __future__ import annotations

import importlib
import logging

import click

# command name -> "module:attribute" in mydrive.cli
COMMAND_MODULES = {
    "peer": "peer:peer",
    "pki": "pki:pki",
    "serve": "serve:serve",
    "cluster": "cluster:cluster",
    "user": "users:user",
    "put": "files:put",
    "ls": "files:ls",
    "get": "files:get",
    "inspect": "files:inspect",
    "rm": "files:rm",
    "gc": "files:gc",
    "metrics": "files:metrics",
    "jobs": "jobs:jobs",
    "check": "check:check",
    "durability": "check:durability",
    "compose": "compose:compose",  # compose generate: N peers as one compose project
    "kubernetes": "kubernetes:kubernetes",  # kubernetes generate: N peers as manifests
}


def load_command(name: str) -> click.Command:
    """The command ``name`` of COMMAND_MODULES, its module imported now."""
    module_name, _, attribute = COMMAND_MODULES[name].partition(":")
    module = importlib.import_module(f"{__package__}.{module_name}")
    command: click.Command = getattr(module, attribute)
    if name == "user":
        from . import sftp

        assert isinstance(command, click.Group)

        sftp.register(command)  # user add-ssh-key | ssh-keys | remove-ssh-key (idempotent)
    return command


class LazyGroup(click.Group):
    """A group whose commands are imported on first use (``COMMAND_MODULES``)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMAND_MODULES))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_MODULES:
            self.add_command(load_command(cmd_name), cmd_name)
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup)
@click.option("-v", "--verbose", is_flag=True, help="log more")
def cli(verbose: bool) -> None:
    """mydrive: a peer-to-peer encrypted file store."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")


def main() -> None:
    cli(prog_name="mydrive")
