"""Accounts: onboarding, login, logout, passphrase rotation."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, g, redirect, render_template, request
from werkzeug.wrappers import Response

from mydrive.crypto.keys import MAX_USERNAME_CHARS
from mydrive.errors import BadRequest
from mydrive.ui import forms
from mydrive.ui.state import current_session, require_session, ui_state
from mydrive.ui.web import public, set_session_cookie

log = logging.getLogger("mydrive.ui")
bp = Blueprint("account", __name__)

NOTICES = {
    "welcome": "Your account is ready. Upload your first file below.",
    "rotated": "Passphrase changed. Log in with your new passphrase.",
    "logged-out": "You are logged out; your keys were dropped from memory.",
    "expired": "Your session ended. Please log in again.",
}


def _form_page(template: str, status: int, **context: Any) -> tuple[str, int]:
    return render_template(template, forms=forms, max_name=MAX_USERNAME_CHARS, **context), \
        status


@bp.get("/")
@public
def index() -> Response:
    return redirect("/files" if current_session() else "/login", code=303)


@bp.route("/welcome", methods=["GET", "POST"])
@public
def welcome() -> Any:
    if request.method == "GET":
        return _form_page("welcome.html", 200)
    state = ui_state()
    name = forms.text("user_name", max_chars=MAX_USERNAME_CHARS).strip()
    try:
        passphrase = forms.new_passphrase("passphrase", "confirm")
    except forms.FormError as exc:
        return _form_page("welcome.html", 400, error=str(exc), error_field=exc.field,
                          user_name=name)
    try:
        record = state.client.create_user(name, passphrase)
    except BadRequest as exc:  # invalid name: say so on the form
        return _form_page("welcome.html", 400, error=str(exc), error_field="user_name",
                          user_name=name)
    log.info("user created: %s", record.name)
    keys = state.client.login(record.name, passphrase)
    response = redirect("/files?notice=welcome", code=303)
    set_session_cookie(response, state.sessions.login(record.name, keys))
    return response


@bp.route("/login", methods=["GET", "POST"])
@public
def login() -> Any:
    state = ui_state()
    if request.method == "GET":
        notice = NOTICES.get(request.args.get("notice", ""))
        if notice is None and g.get("mydrive_session_expired"):
            notice = NOTICES["expired"]
        return _form_page("login.html", 200, notice=notice,
                          next=forms.local_next(request.args.get("next")))
    name = forms.text("user_name", max_chars=MAX_USERNAME_CHARS).strip()
    passphrase = forms.text("passphrase", max_chars=forms.MAX_PASSPHRASE_CHARS)
    keys = state.client.login(name, passphrase)  # WrongPassphrase / UnknownUser: error page
    old = request.cookies.get(state.session_cookie)
    if old:
        state.sessions.logout(old)
    response = redirect(forms.local_next(request.form.get("next")), code=303)
    set_session_cookie(response, state.sessions.login(name, keys))
    log.info("login: %s", name)
    return response


@bp.post("/logout")
@public
def logout() -> Response:
    state = ui_state()
    session = current_session()
    if session is not None:
        state.baskets.clear(session.user_id)
    sid = request.cookies.get(state.session_cookie)
    if sid:
        state.sessions.logout(sid)
    response = redirect("/login?notice=logged-out", code=303)
    response.delete_cookie(state.session_cookie, path="/",
                           secure=state.settings.secure_cookies, httponly=True,
                           samesite="Strict")
    return response


@bp.route("/passphrase", methods=["GET", "POST"])
def passphrase() -> Any:
    session = require_session()
    if request.method == "GET":
        return _form_page("passphrase.html", 200)
    state = ui_state()
    current = forms.text("current", max_chars=forms.MAX_PASSPHRASE_CHARS)
    try:
        new = forms.new_passphrase("new", "confirm")
    except forms.FormError as exc:
        return _form_page("passphrase.html", 400, error=str(exc), error_field=exc.field)
    state.client.rotate_passphrase(session.user_name, current, new)  # WrongPassphrase: page
    # Old sessions hold the same master key (rotation re-wraps it), but a passphrase change
    # is when people expect every other login to end: log them all out.
    state.sessions.logout_user(session.user_id)
    state.baskets.clear(session.user_id)
    log.info("passphrase rotated: %s", session.user_name)
    response = redirect("/login?notice=rotated", code=303)
    response.delete_cookie(state.session_cookie, path="/",
                           secure=state.settings.secure_cookies, httponly=True,
                           samesite="Strict")
    return response
