"""``mydrive jobs [--json]``, ``mydrive jobs cancel ID``, and following a job for ``get``
and ``put``.

A ``get`` goes to this peer's receiver as a download job, a ``put`` to its sender as an
upload job, whenever that service's Control socket answers (docs/jobs.md); otherwise, or
with ``--local``, it runs in the CLI process as before. The user's passphrase and identity
key stay in this process: only file keys and signed delegations cross the local sockets, and
an upload's file document is signed here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .common import handle_errors, json_option, peer_option, print_json

if TYPE_CHECKING:
    from mydrive.node.jobs_control import ControlClient, JobView

# How long `get` keeps following a job whose receiver stopped answering (it may be being
# restarted; the job resumes there), before it says so and exits.
RECONNECT_WAIT_S = 60.0
POLL_S = 0.2


def next_step(view: JobView) -> str | None:
    """What someone has to run for a job that waits on a person, else None. A stored upload
    waits for its owner's signature, which no listing without that user's passphrase gives:
    it would otherwise sit in ``awaiting_signature`` with nothing saying why."""
    from mydrive.node.jobs_store import AWAITING_SIGNATURE

    if view.state != AWAITING_SIGNATURE:
        return None
    return (f"stored; waits for its owner (user id {view.owner_id[:16]}) to sign it: run "
            f"`mydrive jobs --user NAME` as that user (or their next put or UI page), or "
            f"`mydrive jobs cancel {view.job_id}` to drop it (its chunks become orphans)")


def job_json(view: JobView, label: str | None = None) -> dict[str, Any]:
    """``label``: the remote path, opened with the user's keys (None: not logged in, or
    another user's job; the peer keeps it sealed, docs/jobs.md)."""
    return {"job_id": view.job_id, "kind": view.kind, "state": view.state,
            "label": label, "owner_id": view.owner_id, "destination": view.destination,
            "bytes_total": view.bytes_total, "bytes_done": view.bytes_done,
            "error": view.error, "created_ms": view.created_ms, "updated_ms": view.updated_ms,
            "next_step": next_step(view)}


def follow(peer_dir: Path, job_id: str, on_progress: Callable[[JobView], None], *,
           socket_name: str | None = None, control: ControlClient | None = None) -> JobView:
    """Poll a job until it finishes (an upload: or awaits its owner's signature); ride out
    a receiver (``socket_name``: sender) restart of up to RECONNECT_WAIT_S. ``control``: the
    caller's client to poll with (it closes it); one client polls while the service answers,
    a new one after it stopped answering."""
    from mydrive.errors import MydriveError, PeerUnavailable
    from mydrive.node.jobs_control import SOCKET_NAME, ControlClient, pause_while_running
    from mydrive.node.jobs_store import AWAITING_SIGNATURE

    lost_since: float | None = None
    own: ControlClient | None = None  # opened here (after a restart): closed here
    try:
        while True:
            try:
                if control is None:
                    control = own = ControlClient(peer_dir,
                                                  socket_name=socket_name or SOCKET_NAME)
                asked = time.monotonic()
                view = control.job(job_id, wait_ms=int(POLL_S * 1000))
                lost_since = None
            except MydriveError as exc:
                if not isinstance(exc, PeerUnavailable):
                    raise
                control = None  # the service may be restarting: a new client next time
                if own is not None:
                    own.close()
                    own = None
                lost_since = lost_since or time.monotonic()
                if time.monotonic() - lost_since > RECONNECT_WAIT_S:
                    raise PeerUnavailable(f"this peer's service stopped answering; job "
                                          f"{job_id} continues when it is back (mydrive "
                                          f"jobs)") from exc
                time.sleep(1.0)
                continue
            on_progress(view)
            if view.finished or view.state == AWAITING_SIGNATURE:
                return view
            pause_while_running(asked, POLL_S)
    finally:
        if own is not None:
            own.close()


def _all_jobs(peer_dir: Path) -> list[JobView]:
    from mydrive.errors import MydriveError

    views: list[JobView] = []
    errors: list[MydriveError] = []
    for name in _socket_names():
        try:
            views.extend(_call(peer_dir, name, lambda c: c.jobs()))
        except MydriveError as exc:  # that service is not running: list the other's
            errors.append(exc)
    if len(errors) == 2:
        raise errors[0]
    return sorted(views, key=lambda v: (v.created_ms, v.job_id))


def _socket_names() -> tuple[str, str]:
    from mydrive.node.jobs_control import SOCKET_NAME, UPLOAD_SOCKET_NAME

    return SOCKET_NAME, UPLOAD_SOCKET_NAME


def _call(peer_dir: Path, socket_name: str, fn: Callable[[Any], Any]) -> Any:
    from mydrive.node.jobs_control import ControlClient

    control = ControlClient(peer_dir, socket_name=socket_name)
    try:
        return fn(control)
    finally:
        control.close()


def _labels(peer_dir: Path, user: str | None) -> tuple[list[JobView], dict[str, str | None]]:
    """The jobs, after signing this user's uploads that wait for it; job id -> remote path
    for the user's jobs (asks the passphrase). Without a user: the jobs, no names."""
    if not user:
        return _all_jobs(peer_dir), {}
    from mydrive.node.jobs_control import UPLOAD_SOCKET_NAME, control_running, open_label
    from mydrive.node.jobs_signing import finish_pending_uploads

    from .users import session

    with session(peer_dir, user) as (client, keys):
        if control_running(peer_dir, UPLOAD_SOCKET_NAME):
            for job_id, outcome in _call(peer_dir, UPLOAD_SOCKET_NAME,
                                         lambda c: finish_pending_uploads(client, keys, c)):
                if outcome not in ("signed", "stored"):
                    click.echo(f"upload job {job_id} not signed: {outcome}", err=True)
        views = _all_jobs(peer_dir)
        labels = {v.job_id: open_label(keys, v) for v in views}
    return views, labels


@click.group(invoke_without_command=True)
@peer_option
@click.option("--user", "user", envvar="MYDRIVE_USER", default=None,
              help="show this user's file names and sign their stored uploads (asks the "
                   "passphrase; or MYDRIVE_USER)")
@json_option
@click.pass_context
def jobs(ctx: click.Context, peer_dir: Path, user: str | None, as_json: bool) -> None:
    """This peer's jobs (downloads on its receiver, uploads on its sender): state, bytes
    done, errors."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = peer_dir
        return
    with handle_errors():
        views, labels = _labels(peer_dir, user)
        if as_json:
            print_json({"jobs": [job_json(v, labels.get(v.job_id)) for v in views]})
            return
        for v in views:
            error = f"  {v.error}" if v.error else ""
            label = labels.get(v.job_id) or "(name sealed)"
            click.echo(f"{v.job_id}  {v.kind:<8} {v.state:<9} {v.bytes_done:>14}/"
                       f"{v.bytes_total:<14} {label}{error}")
            step = next_step(v)
            if step:
                click.echo(f"    {step}")


@jobs.command("cancel")
@click.argument("job_id")
@json_option
@click.pass_obj
def jobs_cancel(peer_dir: Path, job_id: str, as_json: bool) -> None:
    """Cancel job JOB_ID (queued or awaiting a signature: at once; running: at its next
    chunk)."""
    from mydrive.errors import MydriveError, UnknownFile

    with handle_errors():
        view = None
        first_error: MydriveError | None = None
        for name in _socket_names():
            try:
                view = _call(peer_dir, name, lambda c: c.cancel(job_id))
                break
            except MydriveError as exc:
                if not isinstance(exc, UnknownFile) and first_error is None:
                    first_error = exc
        if view is None:
            raise first_error or UnknownFile(f"no job {job_id} on this peer")
        if as_json:
            print_json(job_json(view))
        else:
            click.echo(f"{view.job_id}: {view.state}")
