"""The file tree, uploads, the download basket and transfer progress."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from flask import Blueprint, jsonify, redirect, render_template, request
from werkzeug.datastructures import FileStorage
from werkzeug.wrappers import Response

from mydrive.errors import BadRequest, MydriveError, PathTraversal, TooLarge, UnknownFile
from mydrive.formats.paths import normalize_remote_path
from mydrive.node.ui_address import health_body
from mydrive.ui import forms
from mydrive.ui.basket import BasketItem
from mydrive.ui.jobs import Job, JobFile, Progress
from mydrive.ui.sessions import Session
from mydrive.ui.state import require_session, ui_state
from mydrive.ui.tree import build_tree
from mydrive.ui.uploads import ui_request
from mydrive.ui.views_account import NOTICES
from mydrive.ui.web import public, wants_json

log = logging.getLogger("mydrive.ui")
bp = Blueprint("files", __name__)


@bp.get("/healthz")
@public
def healthz() -> Response:
    return Response(health_body(ui_state().client.peer_id), mimetype="text/plain")


@bp.get("/files")
def files() -> str:
    session = require_session()
    state = ui_state()
    tree = build_tree(state.client.list_files(session.keys))
    return render_template("files.html", tree=tree, notice=NOTICES.get(
        request.args.get("notice", "")), basket=state.baskets.items(session.user_id),
        jobs=_recent_jobs(session)[:5],
        download_dir=str(state.client.download_dir_of(session.keys)),
        folder=request.args.get("folder", "/"), max_upload_bytes=state.settings.max_upload_bytes)


@bp.get("/basket")
def basket_page() -> str:
    session = require_session()
    state = ui_state()
    return render_template("basket.html", basket=state.baskets.items(session.user_id),
                           download_dir=str(state.client.download_dir_of(session.keys)))


def _back(default: str = "/files") -> Response:
    target = forms.local_next(request.form.get("back"), default)
    return redirect(target, code=303)


@bp.post("/basket/add")
def basket_add() -> Response:
    session = require_session()
    state = ui_state()
    path = normalize_remote_path(forms.text("path"))
    is_folder = request.form.get("kind") == "folder"
    if is_folder:
        state.client.select(session.keys, path, recursive=True)  # UnknownFile if empty
    else:
        state.client.find(session.keys, path)
    state.baskets.add(session.user_id, BasketItem(path=path, is_folder=is_folder))
    return _back()


@bp.post("/basket/remove")
def basket_remove() -> Response:
    session = require_session()
    ui_state().baskets.remove(session.user_id, forms.text("path"))
    return _back()


@bp.post("/basket/clear")
def basket_clear() -> Response:
    session = require_session()
    ui_state().baskets.clear(session.user_id)
    return _back()


@bp.post("/basket/download")
def basket_download() -> Response:
    session = require_session()
    state = ui_state()
    items = state.baskets.items(session.user_id)
    if not items:
        raise BadRequest("the basket is empty: add files or folders first")
    overwrite = request.form.get("overwrite") == "on"
    chosen: dict[str, int] = {}
    for item in items:
        for path, record in state.client.select(session.keys, item.path,
                                                recursive=item.is_folder):
            chosen.setdefault(path, record.size_bytes)
            if len(chosen) > state.settings.max_batch_files:
                raise TooLarge(f"the basket holds more than {state.settings.max_batch_files} "
                               f"files; download it in parts")
    client = state.client
    service = state.service_jobs
    if service is not None and service.available():
        group = os.urandom(16).hex()
        service.submit_basket(client, session.keys, list(chosen), overwrite=overwrite,
                              group=group)
        state.baskets.clear(session.user_id)
        log.info("download job %s on this peer's receiver: %d file(s)", group, len(chosen))
        return redirect(f"/jobs/{group}", code=303)

    def fetch(item: JobFile, progress: Progress) -> str:
        path, _ = client.get(_keys(session), item.remote_path, overwrite=overwrite,
                             progress=progress)
        return str(path)

    job = state.jobs.submit(session.user_id, "download",
                            [JobFile(remote_path=p, size_bytes=s) for p, s in chosen.items()],
                            fetch, target=str(client.download_dir_of(session.keys)))
    state.baskets.clear(session.user_id)
    log.info("download job %s: %d file(s)", job.job_id, len(chosen))
    return redirect(f"/jobs/{job.job_id}", code=303)


def _recent_jobs(session: Session) -> list[Job]:
    """This UI's own jobs and the receiver's basket downloads, newest first."""
    state = ui_state()
    jobs = state.jobs.of_user(session.user_id)
    if state.service_jobs is not None:
        try:
            target = str(state.client.download_dir_of(session.keys))
            jobs += state.service_jobs.of_user(session.keys, target=target,
                                               client=state.client)
        except MydriveError as exc:  # the receiver is down: show what this UI has
            log.info("receiver jobs unavailable: %s", type(exc).__name__)
    return sorted(jobs, key=lambda j: j.created_ms, reverse=True)


def _find_job(session: Session, job_id: str) -> Job:
    state = ui_state()
    try:
        return state.jobs.get(session.user_id, job_id)
    except UnknownFile as unknown:
        if state.service_jobs is None:
            raise
        try:
            target = str(state.client.download_dir_of(session.keys))
            return state.service_jobs.get(session.keys, job_id, target=target,
                                          client=state.client)
        except MydriveError:  # not there either, or no receiver: this UI doesn't know it
            raise unknown from None


def _keys(session: Session) -> Any:
    return session.keys  # NotLoggedIn once the user logged out: the job stops there


@bp.post("/upload")
def upload() -> Any:
    session = require_session()
    state = ui_state()
    folder = normalize_remote_path(forms.text("folder")) if \
        request.form.get("folder", "/").strip("/ ") else "/"
    uploads: list[FileStorage] = [f for f in request.files.getlist("files") if f.filename]
    if not uploads:
        raise BadRequest("choose at least one file to upload")
    if len(uploads) > state.settings.max_upload_files:
        raise TooLarge(f"at most {state.settings.max_upload_files} files per upload")
    items: list[tuple[JobFile, Path]] = []
    for storage in uploads:
        name = str(storage.filename)
        if "/" in name or "\\" in name:
            raise PathTraversal(f"file name {name!r:.80} contains a path separator")
        remote = normalize_remote_path(f"{folder.rstrip('/')}/{name}")
        stream = storage.stream
        temp = Path(getattr(stream, "name", ""))
        assert temp in ui_request().temp_files()
        stream.close()
        items.append((JobFile(remote_path=remote, size_bytes=temp.stat().st_size), temp))
    if len({j.remote_path for j, _ in items}) != len(items):
        raise BadRequest("two chosen files have the same name")
    temps = {j.remote_path: t for j, t in items}
    # From here the job owns the temporary files (the request's teardown leaves them).
    for temp in temps.values():
        ui_request().temp_files().remove(temp)
    client = state.client
    service = state.service_jobs
    if service is not None and service.uploads_available():
        # Renamed out of the temporary files' pattern so a UI restart does not delete them:
        # the sender's jobs read them, and remove them when done (docs/jobs.md).
        for remote, temp in list(temps.items()):
            temps[remote] = temp.with_name(f"job-{os.urandom(8).hex()}")
            os.replace(temp, temps[remote])
        group = os.urandom(16).hex()
        try:
            service.submit_uploads(client, session.keys, [(t, r) for r, t in temps.items()],
                                   group=group)
        except UnknownFile:  # a sender that does not see this UI's files: upload here
            pass
        else:
            log.info("upload job %s on this peer's sender: %d file(s)", group, len(temps))
            if wants_json():
                return jsonify({"job": group, "url": f"/jobs/{group}"})
            return redirect(f"/jobs/{group}", code=303)

    def put(item: JobFile, progress: Progress) -> str:
        client.put(_keys(session), temps[item.remote_path], item.remote_path,
                   progress=progress)
        return item.remote_path

    def cleanup() -> None:
        for temp in temps.values():
            temp.unlink(missing_ok=True)

    job = state.jobs.submit(session.user_id, "upload", [j for j, _ in items], put,
                            target=folder, cleanup=cleanup)
    log.info("upload job %s: %d file(s)", job.job_id, len(items))
    if wants_json():
        return jsonify({"job": job.job_id, "url": f"/jobs/{job.job_id}"})
    return redirect(f"/jobs/{job.job_id}", code=303)


@bp.get("/jobs/<job_id>")
def job_page(job_id: str) -> str:
    session = require_session()
    job = _find_job(session, job_id[:64])
    return render_template("job.html", job=job.to_json())


@bp.get("/api/jobs/<job_id>")
def job_json(job_id: str) -> Response:
    session = require_session()
    return jsonify(_find_job(session, job_id[:64]).to_json())
