"""``mydrive jobs [--json]``, ``mydrive jobs cancel ID``, and ``get``'s job path.

A ``get`` goes to this peer's receiver as a download job whenever its Control socket answers
(docs/jobs.md); otherwise, or with ``--local``, it runs in the CLI process as before. The
user's passphrase and identity key stay in this process: only the file key and the signed
delegation cross the local socket.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import handle_errors, json_option, peer_option, print_json

if TYPE_CHECKING:
    from mydrive.node.jobs_control import JobView

# How long `get` keeps following a job whose receiver stopped answering (it may be being
# restarted; the job resumes there), before it says so and exits.
RECONNECT_WAIT_S = 60.0
POLL_S = 0.2


def job_json(view: JobView, label: str | None = None) -> dict[str, Any]:
    """``label``: the remote path, opened with the user's keys (None: not logged in, or
    another user's job; the peer keeps it sealed, docs/jobs.md)."""
    return {"job_id": view.job_id, "kind": view.kind, "state": view.state,
            "label": label, "owner_id": view.owner_id, "destination": view.destination,
            "bytes_total": view.bytes_total, "bytes_done": view.bytes_done,
            "error": view.error, "created_ms": view.created_ms, "updated_ms": view.updated_ms}


def follow(peer_dir: Path, job_id: str, on_progress: Callable[[JobView], None]) -> JobView:
    """Poll a job until it finishes; ride out a receiver restart of up to RECONNECT_WAIT_S."""
    from mydrive.errors import MydriveError, PeerUnavailable
    from mydrive.node.jobs_control import ControlClient

    lost_since: float | None = None
    while True:
        try:
            control = ControlClient(peer_dir)
            try:
                view = control.job(job_id)
            finally:
                control.close()
            lost_since = None
        except MydriveError as exc:
            if not isinstance(exc, PeerUnavailable):
                raise
            lost_since = lost_since or time.monotonic()
            if time.monotonic() - lost_since > RECONNECT_WAIT_S:
                raise PeerUnavailable(f"this peer's receiver stopped answering; job {job_id} "
                                      f"continues when it is back (mydrive jobs)") from exc
            time.sleep(1.0)
            continue
        on_progress(view)
        if view.finished:
            return view
        time.sleep(POLL_S)


def _open(peer_dir: Path) -> Any:
    from mydrive.node.jobs_control import ControlClient

    return ControlClient(peer_dir)


def _labels(peer_dir: Path, user: str | None, views: list[JobView]) -> dict[str, str | None]:
    """Job id -> remote path for the logged-in user's jobs (asks the passphrase)."""
    if not user:
        return {}
    from mydrive.node.jobs_control import open_label

    from .users import session

    with session(peer_dir, user) as (_, keys):
        return {v.job_id: open_label(keys, v) for v in views}


@click.group(invoke_without_command=True)
@peer_option
@click.option("--user", "user", envvar="MYDRIVE_USER", default=None,
              help="show this user's file names (asks the passphrase; or MYDRIVE_USER)")
@json_option
@click.pass_context
def jobs(ctx: click.Context, peer_dir: Path, user: str | None, as_json: bool) -> None:
    """This peer's download jobs: state, bytes done, errors."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = peer_dir
        return
    with handle_errors():
        control = _open(peer_dir)
        try:
            views = control.jobs()
        finally:
            control.close()
        labels = _labels(peer_dir, user, views)
        if as_json:
            print_json({"jobs": [job_json(v, labels.get(v.job_id)) for v in views]})
            return
        for v in views:
            error = f"  {v.error}" if v.error else ""
            label = labels.get(v.job_id) or "(name sealed)"
            click.echo(f"{v.job_id}  {v.kind:<8} {v.state:<9} {v.bytes_done:>14}/"
                       f"{v.bytes_total:<14} {label}{error}")


@jobs.command("cancel")
@click.argument("job_id")
@json_option
@click.pass_obj
def jobs_cancel(peer_dir: Path, job_id: str, as_json: bool) -> None:
    """Cancel job JOB_ID (queued: at once; running: at its next chunk)."""
    with handle_errors():
        control = _open(peer_dir)
        try:
            view = control.cancel(job_id)
        finally:
            control.close()
        if as_json:
            print_json(job_json(view))
        else:
            click.echo(f"{view.job_id}: {view.state}")
