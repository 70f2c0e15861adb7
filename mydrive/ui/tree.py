"""A user's flat list of files (decrypted paths) as a tree of folders, for the tree page."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from mydrive.client import FileEntry


@dataclass
class FileNode:
    name: str
    path: str
    size_bytes: int
    created_ms: int


@dataclass
class FolderNode:
    name: str
    path: str  # "/" for the root
    folders: dict[str, FolderNode] = field(default_factory=dict)
    files: list[FileNode] = field(default_factory=list)

    @property
    def size_bytes(self) -> int:
        return (sum(f.size_bytes for f in self.files)
                + sum(d.size_bytes for d in self.folders.values()))

    @property
    def file_count(self) -> int:
        return len(self.files) + sum(d.file_count for d in self.folders.values())

    def sorted_folders(self) -> list[FolderNode]:
        return [self.folders[k] for k in sorted(self.folders, key=str.casefold)]

    def sorted_files(self) -> list[FileNode]:
        return sorted(self.files, key=lambda f: f.name.casefold())

    def folder_paths(self) -> list[str]:
        """This folder and every folder below it, as paths (for the upload target list)."""
        out = [self.path]
        for sub in self.sorted_folders():
            out.extend(sub.folder_paths())
        return out


def build_tree(entries: Iterable[FileEntry]) -> FolderNode:
    """Nest canonical paths ('/a/b/c.txt') into folders; a folder exists if a file is in it."""
    root = FolderNode(name="", path="/")
    for entry in entries:
        parts = entry.path.strip("/").split("/")
        assert entry.path.startswith("/") and all(parts), entry.path
        folder = root
        for i, part in enumerate(parts[:-1]):
            folder = folder.folders.setdefault(
                part, FolderNode(name=part, path="/" + "/".join(parts[: i + 1])))
        folder.files.append(FileNode(name=parts[-1], path=entry.path,
                                     size_bytes=entry.size_bytes, created_ms=entry.created_ms))
    return root


def human_size(size_bytes: int) -> str:
    """1536 -> '1.5 KiB' (binary units, one decimal above bytes)."""
    value = float(size_bytes)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{size_bytes} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
