"""``mydrive user create|rotate-passphrase``, and the passphrase and login that every
command acting for a user goes through (``session``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mydrive.errors import BadRequest
from mydrive.runtime.faults import NO_FAULTS, FaultHooks

from .common import handle_errors, peer_option, user_option

if TYPE_CHECKING:  # imported by the commands that use them: `mydrive --help` stays quick
    from mydrive.client import PeerClient
    from mydrive.crypto.keys import UserKeys

PASSPHRASE_ENV = "MYDRIVE_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret
NEW_PASSPHRASE_ENV = "MYDRIVE_NEW_PASSPHRASE"  # noqa: S105 - the variable's name, not a secret


def _ask(env: str, prompt: str, *, confirm: bool) -> str:
    """A passphrase from ``env``, else from the terminal (twice with ``confirm``)."""
    value = os.environ.get(env)
    if value:
        return value
    if not sys.stdin.isatty():
        raise BadRequest(f"no {prompt.lower()}: set {env} or run in a terminal")
    text: str = click.prompt(prompt, hide_input=True, confirmation_prompt=confirm)
    return text


def passphrase(*, confirm: bool) -> str:
    """The user's passphrase: MYDRIVE_PASSPHRASE or a prompt (twice with ``confirm``)."""
    return _ask(PASSPHRASE_ENV, "Passphrase", confirm=confirm)


@contextmanager
def session(peer_dir: Path, user: str, *,
            faults: FaultHooks = NO_FAULTS) -> Iterator[tuple[PeerClient, UserKeys]]:
    """The peer's client and the user's keys (logged in with their passphrase), closed after."""
    from mydrive.node.local_client import open_client

    client = open_client(peer_dir, faults=faults)
    try:
        keys = client.login(user, passphrase(confirm=False))
        yield client, keys
    finally:
        client.close()


@click.group()
def user() -> None:
    """User accounts."""


@user.command("create")
@peer_option
@user_option
def user_create(peer_dir: Path, user: str) -> None:
    """Create a user on this peer (asks for the passphrase twice)."""
    from mydrive.node.local_client import open_client

    with handle_errors():
        client = open_client(peer_dir)
        try:
            record = client.create_user(user, passphrase(confirm=True))
        finally:
            client.close()
        click.echo(f"created user {record.name} ({record.user_id})")


@user.command("rotate-passphrase")
@peer_option
@user_option
def user_rotate_passphrase(peer_dir: Path, user: str) -> None:
    """Change your passphrase: re-wraps one key, re-encrypts and re-sends nothing.

    The current passphrase comes from MYDRIVE_PASSPHRASE or a prompt, the new one from
    MYDRIVE_NEW_PASSPHRASE or a prompt (asked twice).
    """
    from mydrive.node.local_client import open_client

    with handle_errors():
        current = passphrase(confirm=False)
        new = _ask(NEW_PASSPHRASE_ENV, "New passphrase", confirm=True)
        client = open_client(peer_dir)
        try:
            record = client.rotate_passphrase(user, current, new)
        finally:
            client.close()
        click.echo(f"passphrase of user {record.name} changed; no file data was re-encrypted")
