"""What the UI process holds: the peer client, login sessions, baskets, transfer jobs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

from flask import current_app, g

from mydrive.client import PeerClient
from mydrive.errors import NotLoggedIn
from mydrive.ui.basket import Baskets
from mydrive.ui.jobs import JobBoard, ServiceJobs
from mydrive.ui.sessions import Session, SessionStore
from mydrive.ui.settings import UiSettings

EXTENSION = "mydrive"


@dataclass
class UiState:
    client: PeerClient
    sessions: SessionStore
    baskets: Baskets
    jobs: JobBoard
    settings: UiSettings
    csrf_secret: bytes
    upload_dir: Path
    service_jobs: ServiceJobs | None = None  # the receiver's basket downloads (docs/jobs.md)

    @property
    def session_cookie(self) -> str:
        return "__Host-mydrive-session" if self.settings.secure_cookies else "mydrive-session"

    @property
    def csrf_cookie(self) -> str:
        return "__Host-mydrive-csrf" if self.settings.secure_cookies else "mydrive-csrf"


def ui_state() -> UiState:
    return cast(UiState, current_app.extensions[EXTENSION])


def current_session() -> Session | None:
    """The logged-in session of this request (set by the app's before_request hook)."""
    return cast(Session | None, g.get("mydrive_session"))


def require_session() -> Session:
    session = current_session()
    if session is None:
        raise NotLoggedIn("please log in")
    return session
