"""The user's files as a directory tree, and SFTP paths turned into remote paths.

mydrive stores files, not directories: a directory exists while some file's path runs
through it. SFTP clients expect directories, so ``mkdir`` adds an *empty directory* that
lives only in the SFTP session that made it (at most ``MAX_SESSION_DIRS``); it becomes real
the moment a file is stored under it, and an empty one is forgotten when the session ends.

Paths from clients are bytes, absolute or relative to ``/`` (the user's root, which is also
the session's working directory). ``.`` and ``..`` are resolved lexically; a ``..`` above
the root is path traversal and refused, and every resulting name must pass the remote path
rules (mydrive.formats.paths). Nothing here touches the peer's file system.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from mydrive.errors import BadRequest, PathTraversal
from mydrive.formats.paths import MAX_PATH_CHARS, normalize_remote_path

ROOT = "/"
# Uploads are stored under this name first and renamed into place once whole; the SFTP face
# hides it and refuses to touch it (docs/sftp.md).
STAGING_DIR = "/.mydrive-sftp-staging"
MAX_SESSION_DIRS = 1024


def resolve(raw: bytes | str) -> str:
    """The canonical remote path ('/' for the root) of a client-given SFTP path."""
    if isinstance(raw, bytes):
        if len(raw) > 4 * MAX_PATH_CHARS:
            raise BadRequest(f"path longer than {MAX_PATH_CHARS} characters")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("path is not UTF-8") from None
    else:
        text = raw
    if "\x00" in text:
        raise BadRequest("path contains a NUL character")
    if "\\" in text:
        raise PathTraversal(f"path {text!r:.80} contains a backslash; use '/'")
    parts: list[str] = []
    for part in text.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not parts:
                raise PathTraversal(f"path {text!r:.80} climbs above the root of your drive")
            parts.pop()
            continue
        parts.append(part)
    if not parts:
        return ROOT
    return normalize_remote_path("/" + "/".join(parts))


def parent_of(path: str) -> str:
    assert path.startswith("/")
    head = path.rsplit("/", 1)[0]
    return head or ROOT


def name_of(path: str) -> str:
    return path.rsplit("/", 1)[1] if path != ROOT else ROOT


def is_staging(path: str) -> bool:
    return path == STAGING_DIR or path.startswith(STAGING_DIR + "/")


def _ancestors(path: str) -> Iterable[str]:
    while path != ROOT:
        path = parent_of(path)
        yield path


class StoredFile(Protocol):
    """What the tree needs of a stored file (``mydrive.client.FileEntry`` has it)."""

    @property
    def path(self) -> str: ...

    @property
    def size_bytes(self) -> int: ...

    @property
    def created_ms(self) -> int: ...

    @property
    def file_id(self) -> str: ...


@dataclass(frozen=True)
class Node:
    path: str
    is_dir: bool
    size_bytes: int = 0
    mtime_s: int = 0
    file_id: str = ""  # hex, of the file shown at this path


class DriveTree:
    """A snapshot: each path's file (the newest if two records claim one) and the directories.

    Two files can share a path after a crash in the middle of an overwrite or a rename, or
    from replication; the newest is shown, and ``file_ids_at`` names all of them.
    """

    def __init__(self, files: Iterable[StoredFile], session_dirs: Iterable[str] = ()) -> None:
        self._all: dict[str, list[StoredFile]] = {}
        for entry in files:
            if is_staging(entry.path):
                continue
            self._all.setdefault(entry.path, []).append(entry)
        for records in self._all.values():
            records.sort(key=newest_key, reverse=True)
        self._dirs: dict[str, int] = {ROOT: 0}
        for path, records in self._all.items():
            for d in _ancestors(path):
                self._dirs[d] = max(self._dirs.get(d, 0), records[0].created_ms // 1000)
        for d in session_dirs:
            if d not in self._all:
                self._dirs.setdefault(d, 0)
                for a in _ancestors(d):
                    self._dirs.setdefault(a, 0)
        self._children: dict[str, list[str]] = {}
        for path in (*self._all, *self._dirs):
            if path != ROOT:
                self._children.setdefault(parent_of(path), []).append(path)

    def lookup(self, path: str) -> Node | None:
        records = self._all.get(path)
        if records:
            newest = records[0]
            return Node(path=path, is_dir=False, size_bytes=newest.size_bytes,
                        mtime_s=newest.created_ms // 1000, file_id=newest.file_id)
        if path in self._dirs:
            return Node(path=path, is_dir=True, mtime_s=self._dirs[path])
        return None

    def file_ids_at(self, path: str) -> list[str]:
        return [e.file_id for e in self._all.get(path, ())]

    def children(self, path: str) -> list[Node]:
        nodes = (self.lookup(p) for p in sorted(set(self._children.get(path, ()))))
        return [n for n in nodes if n is not None]

    def files_under(self, path: str) -> list[str]:
        """Every file path strictly inside directory ``path``."""
        prefix = path.rstrip("/") + "/"
        return sorted(p for p in self._all if p.startswith(prefix))

    def has_files_under(self, path: str) -> bool:
        return bool(self.files_under(path))


def session_dirs_after_rename(dirs: Iterable[str], old: str, new: str) -> set[str]:
    prefix = old + "/"
    out = set()
    for d in dirs:
        if d == old:
            out.add(new)
        elif d.startswith(prefix):
            out.add(new + d[len(old):])
        else:
            out.add(d)
    return out


def newest_key(entry: StoredFile) -> tuple[int, str]:
    """Order of two files claiming one path: the later upload wins, ties by file id."""
    return entry.created_ms, entry.file_id
