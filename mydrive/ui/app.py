"""The Flask app factory: wiring, per-request checks (login, CSRF), headers, error pages."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, current_app, g, jsonify, redirect, render_template, request
from flask.globals import request_ctx
from werkzeug.exceptions import HTTPException

from mydrive.client import PeerClient
from mydrive.errors import MydriveError, NotLoggedIn
from mydrive.node.local_client import open_client
from mydrive.node.peerdir import PeerDir
from mydrive.runtime.clock import Clock, SystemClock
from mydrive.ui import csrf
from mydrive.ui.basket import Baskets
from mydrive.ui.jobs import JobBoard, ServiceJobs
from mydrive.ui.problems import Problem, problem_for
from mydrive.ui.sessions import SessionStore
from mydrive.ui.settings import UiSettings
from mydrive.ui.state import EXTENSION, UiState, current_session, ui_state
from mydrive.ui.tree import human_size
from mydrive.ui.uploads import UPLOAD_DIR_KEY, UiRequest, prepare_upload_dir, ui_request
from mydrive.ui.web import PUBLIC_ATTR, csrf_token, format_time, set_csrf_cookie, wants_json

log = logging.getLogger("mydrive.ui")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
FORM_OVERHEAD_BYTES = 1024 * 1024  # multipart headers and the small fields around the files
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
       "object-src 'none'")
TRUSTED_HOSTS = ["127.0.0.1", "localhost", "[::1]", "::1"]


def create_app(peer_dir: Path, *, settings: UiSettings | None = None,
               client: PeerClient | None = None, clock: Clock | None = None) -> Flask:
    """The UI of the peer in ``peer_dir``; run it in ONE process (keys live in its memory)."""
    peer = PeerDir(peer_dir)
    client = client or open_client(peer_dir)
    if settings is None:
        settings = UiSettings(secure_cookies=peer.config.tls)
    clock = clock or SystemClock()
    app = Flask(__name__)
    app.request_class = UiRequest
    upload_dir = prepare_upload_dir(peer.root / "tmp" / "ui-uploads")
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_upload_bytes + FORM_OVERHEAD_BYTES,
        MAX_FORM_MEMORY_SIZE=1024 * 1024,  # a text field; also bounds the parser's buffer
        MAX_FORM_PARTS=settings.max_upload_files + 16,
        TRUSTED_HOSTS=TRUSTED_HOSTS,  # only loopback names: no DNS-rebinding visitors
        TEMPLATES_AUTO_RELOAD=False,
    )
    app.config[UPLOAD_DIR_KEY] = str(upload_dir)
    app.extensions[EXTENSION] = UiState(
        client=client,
        sessions=SessionStore(clock=clock, idle_timeout_s=settings.idle_timeout_s,
                              max_age_s=settings.max_age_s),
        baskets=Baskets(max_items=settings.max_basket_items),
        jobs=JobBoard(clock=clock, workers=settings.transfer_workers,
                      max_queued=settings.max_queued_jobs,
                      max_per_user=settings.max_jobs_per_user),
        settings=settings, csrf_secret=os.urandom(32), upload_dir=upload_dir,
        service_jobs=ServiceJobs(peer.root))

    from mydrive.ui.views_account import bp as account
    from mydrive.ui.views_files import bp as files

    app.register_blueprint(account)
    app.register_blueprint(files)
    app.before_request(_before)
    app.after_request(_after)
    app.teardown_request(_teardown)
    app.register_error_handler(MydriveError, _mydrive_error)
    app.register_error_handler(csrf.CsrfRejected, _mydrive_error)
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(Exception, _unexpected)
    app.context_processor(_template_globals)
    return app


def _before() -> None:
    state = ui_state()
    g.mydrive_session = None
    sid = request.cookies.get(state.session_cookie)
    if sid:
        try:
            g.mydrive_session = state.sessions.get(sid)
        except NotLoggedIn:
            g.mydrive_session_expired = True
    cookie = request.cookies.get(state.csrf_cookie)
    if not cookie or len(cookie) > csrf.MAX_TOKEN_CHARS:
        cookie = csrf.new_cookie_value()
        g.mydrive_new_csrf_cookie = cookie
    g.mydrive_csrf_cookie = cookie
    if request.endpoint is None or request.endpoint == "static":
        return
    view = current_app.view_functions.get(request.endpoint)
    if not getattr(view, PUBLIC_ATTR, False) and g.mydrive_session is None:
        raise NotLoggedIn("please log in")  # before any body (an upload) is read
    if request.method not in SAFE_METHODS:
        token = request.headers.get(csrf.TOKEN_HEADER) or request.form.get(csrf.TOKEN_FIELD)
        if not csrf.token_ok(state.csrf_secret, request.cookies.get(state.csrf_cookie), token):
            log.warning("refused %s %s: missing or wrong CSRF token", request.method,
                        request.path)
            raise csrf.CsrfRejected()


def _after(response: Response) -> Response:
    new_cookie = g.get("mydrive_new_csrf_cookie")
    if new_cookie:
        set_csrf_cookie(response, new_cookie)
    response.headers.setdefault("Content-Security-Policy", CSP)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if request.endpoint != "static":
        response.headers["Cache-Control"] = "no-store"
    return response


def _teardown(_exc: BaseException | None) -> None:
    # Uploaded temp files not taken over by an upload job (a refused or failed request).
    for temp in ui_request().temp_files():
        temp.unlink(missing_ok=True)


def _problem_response(problem: Problem, message: str) -> Any:
    if request_ctx.url_adapter is None:  # the request was refused before routing (bad Host)
        return Response(f"{problem.title}: {message}\n", status=problem.status,
                        mimetype="text/plain")
    if wants_json():
        return jsonify({"error_kind": problem.kind, "error": message,
                        "title": problem.title}), problem.status
    return render_template("error.html", problem=problem, message=message,
                           back=_back_link()), problem.status


def _back_link() -> str:
    if request.method == "POST" and request.endpoint in ("account.login", "account.welcome",
                                                         "account.passphrase"):
        return request.path  # "try again" goes back to the same form
    return "/files" if current_session() else "/login"


def _mydrive_error(exc: Exception) -> Any:
    if isinstance(exc, NotLoggedIn) and request.method in SAFE_METHODS and not wants_json():
        expired = "&notice=expired" if g.get("mydrive_session_expired") else ""
        return redirect(f"/login?next={quote(request.path, safe='/')}{expired}", code=303)
    problem = problem_for(exc)
    message = str(exc) if not isinstance(exc, csrf.CsrfRejected) else \
        "missing or invalid CSRF token"
    return _problem_response(problem, message)


def _http_error(exc: HTTPException) -> Any:
    code = exc.code or 500
    problem = Problem(code, f"http-{code}", str(exc.name), "")
    return _problem_response(problem, str(exc.description or ""))


def _unexpected(exc: Exception) -> Any:
    log.exception("unexpected error in %s %s", request.method, request.path)
    return _problem_response(problem_for(exc), "an unexpected error; nothing was changed")


def _template_globals() -> dict[str, Any]:
    session = current_session()
    state = ui_state()
    basket_count = len(state.baskets.items(session.user_id)) if session else 0
    return {"csrf_token": csrf_token, "csrf_field": csrf.TOKEN_FIELD,
            "user_name": session.user_name if session else None,
            "basket_count": basket_count, "human_size": human_size,
            "format_time": format_time}
