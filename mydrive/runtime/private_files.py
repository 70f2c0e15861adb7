"""Files and directories for one person: each mydrive user's own download directory, and
plaintext files created readable by the OS account running the peer only.

Several users share a peer (its UI, its receiver), so downloads land in
``<download dir>/<user id>/``, never in one shared directory. The directory is named by user
id, not name, so user names don't show on disk. On POSIX it is 0700 and a downloaded file is
created 0600 (created so, never chmod'ed afterwards: no moment where another account could
open it). Windows has no such modes; the per-user separation still holds.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

from mydrive.errors import BadRequest

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
_POSIX = os.name == "posix"
_USER_ID = re.compile(r"[0-9a-f]{32}")


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can use: made 0700, or narrowed to 0700."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    if path.is_symlink() or not path.is_dir():
        raise BadRequest(f"{path} is not a plain directory")
    if _POSIX and stat.S_IMODE(path.stat().st_mode) != PRIVATE_DIR_MODE:
        os.chmod(path, PRIVATE_DIR_MODE)  # made before this rule, or under a loose umask
    return path


def user_download_dir(base: Path, user_id: str) -> Path:
    """``base/<user id>``: the download directory of this user alone, created private."""
    if _USER_ID.fullmatch(user_id) is None:
        raise BadRequest("a user id is 32 lowercase hex characters")
    return private_dir(base / user_id)


def create_private(path: Path) -> BinaryIO:
    """A new, empty file at ``path`` for writing, created 0600 (what was there is removed;
    a symlink there is never followed)."""
    path.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0) \
        | getattr(os, "O_NOFOLLOW", 0)
    return os.fdopen(os.open(path, flags, PRIVATE_FILE_MODE), "wb")
