"""Remote paths (the names users give files) and where downloads may land.

A remote path is absolute, '/'-separated, with clean components: no '..', '.', empty
parts, backslashes, control characters or NUL. That makes the path safe to turn into a
local path under a download directory on Linux and Windows alike.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path, PurePosixPath

from mydrive.errors import BadRequest, PathTraversal

MAX_PATH_CHARS = 4096
MAX_COMPONENT_CHARS = 255
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)),
                     *(f"LPT{i}" for i in range(1, 10))}
_WINDOWS_FORBIDDEN = set('<>:"|?*')


def normalize_remote_path(raw: str) -> str:
    """The canonical form '/a/b.txt' of a user-given remote path, or a precise error."""
    if not raw or not raw.strip():
        raise BadRequest("empty remote path")
    if len(raw) > MAX_PATH_CHARS:
        raise BadRequest(f"remote path longer than {MAX_PATH_CHARS} characters")
    text = unicodedata.normalize("NFC", raw)
    if "\\" in text:
        raise PathTraversal(f"remote path {raw!r} contains a backslash; use '/'")
    parts = [p for p in text.split("/") if p != ""]
    if not parts:
        raise BadRequest("remote path names no file")
    for part in parts:
        if part in ("..", "."):
            raise PathTraversal(f"remote path {raw!r} contains '{part}'; "
                                f"paths may not climb out of their folder")
        if len(part) > MAX_COMPONENT_CHARS:
            raise BadRequest(f"path component longer than {MAX_COMPONENT_CHARS} characters")
        if any(ord(c) < 32 or ord(c) == 127 for c in part):
            raise BadRequest(f"remote path {raw!r} contains a control character")
        if _WINDOWS_FORBIDDEN & set(part) or part.rstrip(" .") != part:
            raise BadRequest(f"path component {part!r} is not portable: no <>:\"|?* and no "
                             f"trailing dot or space")
        if part.split(".")[0].upper() in _WINDOWS_RESERVED:
            raise BadRequest(f"path component {part!r} is a reserved name on Windows")
    return "/" + "/".join(parts)


def local_destination(base: Path, remote_path: str) -> Path:
    """Where ``remote_path`` lands under ``base``; PathTraversal if it would escape."""
    canonical = normalize_remote_path(remote_path)
    relative = PurePosixPath(canonical).relative_to("/")
    destination = base.joinpath(*relative.parts)
    resolved_base = base.resolve()
    resolved = destination.resolve()
    if resolved_base != resolved and resolved_base not in resolved.parents:
        raise PathTraversal(f"{remote_path!r} would be written outside {base}")
    return destination


