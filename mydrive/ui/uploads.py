"""Receiving a browser upload: streamed to temporary files inside the peer directory.

Werkzeug parses the multipart body as it arrives and writes each file part to a file we
create in PEER_DIR/tmp/ui-uploads/ (0700), so an upload never sits in memory. The size of one
request is capped by Flask's MAX_CONTENT_LENGTH and the time to receive it by
``DeadlineInput``. A temporary file not handed to an upload job is deleted when the request
ends; leftovers of a crash are deleted when the UI starts.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any, cast

from flask import Request, current_app, request
from werkzeug.exceptions import RequestTimeout

UPLOAD_DIR_KEY = "MYDRIVE_UPLOAD_DIR"
UPLOAD_TIMEOUT_KEY = "MYDRIVE_UPLOAD_TIMEOUT_S"
TEMP_PREFIX = "upload-"


def prepare_upload_dir(path: Path) -> Path:
    """Create the directory (owner-only) and delete what a previous run left there."""
    path.mkdir(parents=True, exist_ok=True)
    if os.name == "posix":
        path.chmod(0o700)
    for leftover in path.glob(f"{TEMP_PREFIX}*"):
        leftover.unlink(missing_ok=True)
    return path


class UiRequest(Request):
    """A Flask request whose uploaded files go to temp files in the peer directory."""

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None,
                         content_length: int | None = None) -> IO[bytes]:
        directory = Path(current_app.config[UPLOAD_DIR_KEY])
        handle = tempfile.NamedTemporaryFile(dir=directory, prefix=TEMP_PREFIX,  # noqa: SIM115
                                             delete=False)
        self.temp_files().append(Path(handle.name))
        return handle

    def temp_files(self) -> list[Path]:
        found: list[Path] | None = getattr(self, "_mydrive_temp_files", None)
        if found is None:
            found = []
            self._mydrive_temp_files = found
        return found


def ui_request() -> UiRequest:
    return cast(UiRequest, request._get_current_object())  # type: ignore[attr-defined]


class _DeadlineReader:
    def __init__(self, inner: Any, deadline_s: float) -> None:
        self._inner = inner
        self._deadline_s = deadline_s

    def _check(self) -> None:
        if time.monotonic() > self._deadline_s:
            raise RequestTimeout("the upload took longer than this peer allows")

    def read(self, size: int = -1) -> bytes:
        self._check()
        data: bytes = self._inner.read(size)
        return data

    def readline(self, size: int = -1) -> bytes:
        self._check()
        data: bytes = self._inner.readline(size)
        return data

    def __iter__(self) -> Iterable[bytes]:
        return iter(self.readline, b"")


class DeadlineInput:
    """WSGI middleware: reading a request body past ``timeout_s`` fails with 408."""

    def __init__(self, app: Any, timeout_s: float) -> None:
        self.app = app
        self.timeout_s = timeout_s

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        environ["wsgi.input"] = _DeadlineReader(environ["wsgi.input"],
                                                time.monotonic() + self.timeout_s)
        return self.app(environ, start_response)
