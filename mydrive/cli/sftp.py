"""``mydrive serve sftp DIR`` and ``mydrive user add-ssh-key | ssh-keys | remove-ssh-key``:
the SFTP face (docs/sftp.md)."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from .common import handle_errors, peer_option, print_json, user_option
from .users import passphrase


def run_sftp(directory: Path) -> None:
    """``serve sftp``: the SFTP server of the peer in ``directory``, in the foreground."""
    from mydrive.sftp.serve import run

    logging.getLogger().setLevel(logging.INFO)
    with handle_errors():
        run(directory)


@click.command("add-ssh-key")
@peer_option
@user_option
@click.argument("public_key", type=click.Path(path_type=Path, dir_okay=False, exists=True,
                                               allow_dash=True))
@click.option("--json", "as_json", is_flag=True)
def add_ssh_key(peer_dir: Path, user: str, public_key: Path, as_json: bool) -> None:
    """Let PUBLIC_KEY (an id_*.pub file, or - for stdin) log in to SFTP on this peer.

    Prints the key's unlock secret ONCE: the SSH client sends it as MYDRIVE_UNLOCK (OpenSSH:
    SetEnv). The peer keeps only a copy of your master key wrapped under it.
    """
    from mydrive.node.local_client import open_client
    from mydrive.sftp.accounts import add_ssh_key as add
    from mydrive.sftp.keyring import UNLOCK_ENV

    with handle_errors():
        text = (sys.stdin.read(64 * 1024) if str(public_key) == "-"
                else public_key.read_text(encoding="utf-8", errors="replace")[:64 * 1024])
        client = open_client(peer_dir)
        try:
            entry, secret = add(client, peer_dir, user, passphrase(confirm=False), text)
        finally:
            client.close()
        if as_json:
            print_json({"user": entry.user, "fingerprint": entry.fingerprint,
                        "unlock_env": UNLOCK_ENV, "unlock_secret": secret})
            return
        click.echo(f"SSH key {entry.fingerprint} may now log in to SFTP as {entry.user}.")
        click.echo("Its unlock secret, shown only now (keep it like a private key):")
        click.echo(f"  {secret}")
        click.echo("OpenSSH ~/.ssh/config:")
        click.echo("  Host mydrive")
        click.echo(f"    User {entry.user}")
        click.echo(f"    SetEnv {UNLOCK_ENV}={secret}")


@click.command("ssh-keys")
@peer_option
@user_option
@click.option("--json", "as_json", is_flag=True)
def ssh_keys(peer_dir: Path, user: str, as_json: bool) -> None:
    """The SSH keys registered to USER on this peer."""
    from mydrive.sftp.accounts import list_ssh_keys

    with handle_errors():
        entries = list_ssh_keys(peer_dir, user)
        if as_json:
            print_json({"keys": [{"fingerprint": e.fingerprint, "public_key": e.public_key,
                                  "added_ms": e.added_ms} for e in entries]})
            return
        for e in entries:
            click.echo(f"{e.fingerprint}  {e.public_key.split()[0]}")


@click.command("remove-ssh-key")
@peer_option
@user_option
@click.argument("fingerprint")
def remove_ssh_key(peer_dir: Path, user: str, fingerprint: str) -> None:
    """Stop FINGERPRINT (SHA256:...) logging in; its wrapped key copy is deleted."""
    from mydrive.node.local_client import open_client
    from mydrive.sftp.accounts import remove_ssh_key as remove

    with handle_errors():
        client = open_client(peer_dir)
        try:
            remove(client, peer_dir, user, passphrase(confirm=False), fingerprint)
        finally:
            client.close()
        click.echo(f"removed SSH key {fingerprint} of {user}")


USER_COMMANDS = (add_ssh_key, ssh_keys, remove_ssh_key)


def register(user_group: click.Group) -> None:
    """Add this module's user commands to ``mydrive user``."""
    for command in USER_COMMANDS:
        user_group.add_command(command)
