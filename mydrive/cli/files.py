"""The commands on a user's files: ``put``, ``ls``, ``get``, ``inspect``, ``rm``, ``gc``,
and ``metrics`` of the peer's running services."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from .common import (
    fault_hooks,
    fault_plan_option,
    handle_errors,
    json_option,
    peer_option,
    print_json,
    user_option,
)
from .users import session

if TYPE_CHECKING:
    from mydrive.client import PeerClient
    from mydrive.crypto.keys import UserKeys
    from mydrive.engine.gc import GcReport
    from mydrive.errors import MydriveError
    from mydrive.formats.filerecord import FileRecord
    from mydrive.node.jobs_control import ControlClient, JobView

METRICS_TIMEOUT_S = 5.0


@contextmanager
def _progress(label: str, total: int, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                  TransferSpeedColumn(), TimeRemainingColumn(),
                  console=None, transient=False) as bar:
        task = bar.add_task(label, total=total)
        yield lambda n: bar.advance(task, n)


@click.command()
@peer_option
@user_option
@click.argument("local", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.argument("remote", required=False)
@click.option("--detach", is_flag=True,
              help="submit the upload to this peer's sender and print its job id")
@click.option("--local", "in_process", is_flag=True,
              help="upload in this process even when this peer's sender runs jobs")
@json_option
@fault_plan_option
def put(peer_dir: Path, user: str, local: Path, remote: str | None, detach: bool,
        in_process: bool, as_json: bool, fault_plan: Path | None) -> None:
    """Encrypt LOCAL and store it on other peers as REMOTE (default: /NAME).

    When this peer's sender runs (its control socket answers), the upload is a job there:
    it survives this command being interrupted; the file document is signed here, or by
    your next put, jobs --user or UI visit (docs/jobs.md)."""
    from mydrive.node.jobs_control import UPLOAD_SOCKET_NAME, open_control

    with handle_errors(), session(peer_dir, user, faults=fault_hooks(fault_plan)) as (client,
                                                                                     keys):
        size = local.stat().st_size
        # A fault plan is the test-bed's, for an upload in this process.
        control = None if in_process or fault_plan is not None else \
            open_control(peer_dir, UPLOAD_SOCKET_NAME)
        if control is not None:
            try:
                if _put_as_job(peer_dir, control, client, keys, local, remote, size,
                               detach=detach, as_json=as_json):
                    return
            finally:
                control.close()
        elif detach:
            from mydrive.errors import PeerUnavailable

            raise PeerUnavailable("--detach needs this peer's sender running (no control "
                                  "socket answers)")
        with _progress(f"put {local.name}", size, enabled=not as_json) as progress:
            record = client.put(keys, local, remote, progress=progress)
        _print_stored(client, keys, record, size, as_json)


def _print_stored(client: PeerClient, keys: UserKeys, record: FileRecord, size: int,
                  as_json: bool, job_id: str | None = None) -> None:
    info = client.describe(keys, record)
    if as_json:
        print_json(info if job_id is None else {**info, "job_id": job_id})
    else:
        click.echo(f"stored {info['path']}: {size} bytes in {info['chunk_count']} chunks "
                   f"on {len(info['chunks_per_peer'])} peers")


def _put_as_job(peer_dir: Path, control: ControlClient, client: PeerClient, keys: UserKeys,
                local: Path, remote: str | None, size: int, *, detach: bool,
                as_json: bool) -> bool:
    """``put`` through this peer's sender (``control``, the caller closes it): submit,
    follow, sign (or print the job id). False when the sender does not see the file as this
    process does: upload here."""
    from mydrive.errors import MydriveError, UnknownFile
    from mydrive.node.jobs_control import UPLOAD_SOCKET_NAME
    from mydrive.node.jobs_signing import finish_pending_uploads, finish_upload, submit_put

    from .jobs import follow

    finish_pending_uploads(client, keys, control)  # earlier uploads left to sign
    try:
        job_id, path = submit_put(client, keys, local, remote, control)
    except UnknownFile as exc:
        if detach:
            raise
        click.echo(f"note: {exc}; uploading in this process", err=True)
        return False
    if detach:
        if as_json:
            print_json({"job_id": job_id, "path": path, "size_bytes": size})
        else:
            click.echo(job_id)
        return True
    with _progress(f"put {local.name}", size, enabled=not as_json) as progress:
        shown = [0]

        def advance(view: JobView) -> None:
            progress(view.bytes_done - shown[0])
            shown[0] = view.bytes_done

        view = follow(peer_dir, job_id, advance, socket_name=UPLOAD_SOCKET_NAME,
                      control=control)
    if view.finished:
        raise _job_error(view.error, job_id) if view.error else MydriveError(
            f"job {job_id} {view.state}")
    record = finish_upload(client, keys, control, view) or client.find(keys, path)
    _print_stored(client, keys, record, size, as_json, job_id)
    return True


@click.command("ls")
@peer_option
@user_option
@json_option
def ls(peer_dir: Path, user: str, as_json: bool) -> None:
    """List your files."""
    with handle_errors(), session(peer_dir, user) as (client, keys):
        entries = client.list_files(keys)
        if as_json:
            print_json({"files": [e.to_json() for e in entries]})
            return
        for e in entries:
            click.echo(f"{e.size_bytes:>14}  {e.path}")


@click.command()
@peer_option
@user_option
@click.argument("remote")
@click.option("--out", "out_dir", type=click.Path(path_type=Path, file_okay=False),
              help="directory to write into (default: the peer's download directory)")
@click.option("--overwrite", is_flag=True, help="replace an existing local file")
@click.option("--detach", is_flag=True,
              help="submit the download to this peer's receiver and print its job id")
@click.option("--local", "in_process", is_flag=True,
              help="download in this process even when this peer's receiver runs jobs")
@json_option
def get(peer_dir: Path, user: str, remote: str, out_dir: Path | None, overwrite: bool,
        detach: bool, in_process: bool, as_json: bool) -> None:
    """Fetch REMOTE back from the peers, verify and decrypt it.

    When this peer's receiver runs (its control socket answers), the download is a job
    there: it survives this command being interrupted (docs/jobs.md)."""
    from mydrive.node.jobs_control import open_control

    with handle_errors(), session(peer_dir, user) as (client, keys):
        record = client.find(keys, remote)
        control = None if in_process else open_control(peer_dir)
        if control is not None:
            try:
                _get_as_job(peer_dir, control, client, keys, remote, record, out_dir=out_dir,
                            overwrite=overwrite, detach=detach, as_json=as_json)
            finally:
                control.close()
            return
        if detach:
            from mydrive.errors import PeerUnavailable

            raise PeerUnavailable("--detach needs this peer's receiver running (no control "
                                  "socket answers)")
        with _progress(f"get {remote}", record.size_bytes, enabled=not as_json) as progress:
            path, ledger = client.get(keys, remote, out_dir=out_dir, overwrite=overwrite,
                                      progress=progress)
        if as_json:
            print_json({"path": str(path), "size_bytes": record.size_bytes,
                        "transfer": ledger.to_json()})
        else:
            click.echo(f"wrote {path}")


def _get_as_job(peer_dir: Path, control: ControlClient, client: PeerClient, keys: UserKeys,
                remote: str, record: FileRecord, *, out_dir: Path | None, overwrite: bool,
                detach: bool, as_json: bool) -> None:
    """``get`` through this peer's receiver (``control``, the caller closes it): submit,
    then follow (or print the job id)."""
    from mydrive.errors import MydriveError
    from mydrive.node.jobs_control import submit_get

    from .jobs import follow

    size_bytes = record.size_bytes
    job_id, path = submit_get(client, keys, remote, control, out_dir=out_dir,
                              overwrite=overwrite, record=record)
    if detach:
        if as_json:
            print_json({"job_id": job_id, "path": str(path), "size_bytes": size_bytes})
        else:
            click.echo(job_id)
        return
    with _progress(f"get {remote}", size_bytes, enabled=not as_json) as progress:
        shown = [0]

        def advance(view: JobView) -> None:
            progress(view.bytes_done - shown[0])
            shown[0] = view.bytes_done

        view = follow(peer_dir, job_id, advance, control=control)
    if view.state != "done":
        raise _job_error(view.error, job_id) if view.error else MydriveError(
            f"job {job_id} {view.state}")
    if as_json:
        print_json({"path": str(path), "size_bytes": size_bytes, "job_id": job_id,
                    "transfer": view.transfer or {}})
    else:
        click.echo(f"wrote {path}")


def _job_error(error: str, job_id: str) -> MydriveError:
    """The job's recorded error as the class it was (so the exit code is the same)."""
    from mydrive.node.jobs_control import recorded_error

    return recorded_error(error)


@click.command()
@peer_option
@user_option
@click.argument("remote")
@json_option
def inspect(peer_dir: Path, user: str, remote: str, as_json: bool) -> None:
    """Chunks, segments, replica peers and transfer accounting of one of your files."""
    with handle_errors(), session(peer_dir, user) as (client, keys):
        info = client.inspect(keys, remote)
        if as_json:
            print_json(info)
            return
        from mydrive.formats.peerdoc import accept_peer_documents

        names = {p.peer_id: p.name for p in accept_peer_documents(
            client.store.list_prefix("peer:"), client.peer_trust)}
        click.echo(f"{info['path']}: {info['size_bytes']} bytes, {info['chunk_count']} chunks")
        for c in info["chunks"]:
            where = ", ".join(names.get(p, p) for p in c["replicas"])
            click.echo(f"  chunk {c['index']:>4} {c['chunk_id'][:16]}  {c['segments']:>4} "
                       f"segments  on {where}")
        totals = info["transfer"].get("upload", {}).get("totals", {})
        if totals:
            click.echo(f"  upload: {totals['segments_sent']} segments sent, "
                       f"{totals['segments_rejected']} rejected, "
                       f"{totals['segments_resent']} resent")


def _print_gc(report: GcReport) -> None:
    if report.pending:
        for file_id, peers in sorted(report.pending.items()):
            click.echo(f"  file {file_id[:16]}: chunks still on {', '.join(peers)} "
                       f"(unreachable now; run `mydrive gc` later)")
    for error in report.errors:
        click.echo(f"  note: {error}", err=True)


@click.command("rm")
@peer_option
@user_option
@click.argument("remote")
@click.option("-r", "--recursive", is_flag=True, help="remove every file under a folder")
@json_option
def rm(peer_dir: Path, user: str, remote: str, recursive: bool, as_json: bool) -> None:
    """Delete REMOTE from the metadata and its chunks from every replica peer."""
    with handle_errors(), session(peer_dir, user) as (client, keys):
        result = client.remove(keys, remote, recursive=recursive)
        if as_json:
            print_json(result.to_json())
            return
        for path in result.paths:
            click.echo(f"removed {path}")
        click.echo(f"{result.gc.chunks_removed} chunk replica(s) deleted from peers")
        _print_gc(result.gc)


@click.command("gc")
@peer_option
@user_option
@json_option
def gc(peer_dir: Path, user: str, as_json: bool) -> None:
    """Retry deleting chunks of removed files from peers that were down (owner-signed)."""
    with handle_errors(), session(peer_dir, user) as (client, keys):
        report = client.collect_garbage(keys)
        if as_json:
            print_json(report.to_json())
            return
        click.echo(f"{report.tombstones} pending deletion(s): {report.chunks_removed} chunk "
                   f"replica(s) deleted, {report.tombstones_done} finished")
        _print_gc(report)


@click.command()
@peer_option
def metrics(peer_dir: Path) -> None:
    """Print the Prometheus metrics of this peer's running services."""
    import urllib.request  # only here: it imports http.client and email, ~15 ms a start

    from mydrive.node.peerdir import PeerDir
    from mydrive.node.serve import SERVICES, metrics_url

    with handle_errors():
        cfg = PeerDir(peer_dir).config
        for kind in SERVICES:
            url = metrics_url(cfg, kind)
            try:
                with urllib.request.urlopen(url, timeout=METRICS_TIMEOUT_S) as r:  # noqa: S310
                    click.echo(r.read().decode(), nl=False)
            except OSError as exc:
                click.echo(f"# {url}: {exc}", err=True)
