"""Small helpers shared by the views: public pages, cookies, JSON or HTML answers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any, TypeVar

from flask import g, request
from werkzeug.wrappers import Response

from mydrive.ui.csrf import token_for
from mydrive.ui.state import ui_state

PUBLIC_ATTR = "mydrive_public"
F = TypeVar("F", bound=Callable[..., Any])


def public(view: F) -> F:
    """Mark a view as reachable without logging in (every other view needs a session)."""
    setattr(view, PUBLIC_ATTR, True)
    return view


def set_session_cookie(response: Response, session_id: str) -> None:
    state = ui_state()
    response.set_cookie(state.session_cookie, session_id, path="/", httponly=True,
                        samesite="Strict", secure=state.settings.secure_cookies)


def set_csrf_cookie(response: Response, value: str) -> None:
    state = ui_state()
    response.set_cookie(state.csrf_cookie, value, path="/", httponly=True, samesite="Strict",
                        secure=state.settings.secure_cookies)


def csrf_token() -> str:
    """The token forms of this page must carry (bound to this browser's CSRF cookie)."""
    return token_for(ui_state().csrf_secret, str(g.mydrive_csrf_cookie))


def wants_json() -> bool:
    return request.path.startswith("/api/") or \
        request.accept_mimetypes.best == "application/json"


def format_time(created_ms: int) -> str:
    when = dt.datetime.fromtimestamp(created_ms / 1000, tz=dt.UTC)
    return when.strftime("%Y-%m-%d %H:%M UTC")
