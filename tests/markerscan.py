"""Find a marker string, or its base64 / hex / UTF-16 forms, in files and documents.

Base64 output depends on where the marker sits relative to 3-byte groups, so every one of
the three alignments is searched (the characters that depend only on marker bytes).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path


def marker_forms(marker: bytes) -> dict[str, bytes]:
    forms = {"raw": marker, "hex": marker.hex().encode(), "HEX": marker.hex().upper().encode(),
             "utf-16-le": marker.decode().encode("utf-16-le"),
             "json-escaped": json.dumps(marker.decode()).encode()[1:-1]}
    for shift in range(3):
        padded = b"\0" * shift + marker
        first_full_group = (shift + 2) // 3  # groups wholly inside the marker
        last_full_group = (shift + len(marker)) // 3
        for name, enc in (("b64", base64.b64encode), ("b64url", base64.urlsafe_b64encode)):
            text = enc(padded)[4 * first_full_group:4 * last_full_group]
            assert len(text) >= 16, "marker too short to find in base64"
            forms[f"{name}@{shift}"] = text
    return forms


def find_in_bytes(data: bytes, forms: dict[str, bytes]) -> list[str]:
    return [name for name, form in forms.items() if form in data]


def scan_paths(roots: Iterable[Path], forms: dict[str, bytes],
               skip: Iterable[Path] = ()) -> list[tuple[Path, str]]:
    """(file, form) for every file under ``roots`` (except under ``skip``) holding a form."""
    skipped = [s.resolve() for s in skip]
    hits = []
    for root in roots:
        files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
        for path in files:
            resolved = path.resolve()
            if any(resolved == s or s in resolved.parents for s in skipped):
                continue
            for name in find_in_bytes(path.read_bytes(), forms):
                hits.append((path, name))
    return hits
