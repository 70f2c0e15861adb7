"""A peer's shared secrets (delegate key, control token) are made once, even when its
receiver and sender start at the same moment: a service that wrote its own copy over the
other's would leave the other signing with a key the file no longer holds, and after a
restart that service's jobs' delegations name the wrong key (a CI run failed that way)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mydrive.node import pki
from mydrive.node.jobs_control import ensure_token
from mydrive.node.jobs_runner import DELEGATE_KEY_NAME, delegate_key


def _other_service_wins_the_race(monkeypatch: pytest.MonkeyPatch, make: Callable[[], object]
                                 ) -> list[object]:
    """Both services found the file missing; the other one finishes making it while this one
    is still writing its own. Returns what the other service then holds."""
    real_write = pki.write_secret
    held: list[object] = []

    def write_after_the_other(path: Path, data: bytes) -> None:
        if not held:
            monkeypatch.setattr(pki, "write_secret", real_write)
            held.append(make())
            monkeypatch.setattr(pki, "write_secret", write_after_the_other)
        real_write(path, data)

    monkeypatch.setattr(pki, "write_secret", write_after_the_other)
    return held


def test_delegate_key_made_by_two_services_at_once_is_one_key(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    held = _other_service_wins_the_race(monkeypatch,
                                        lambda: delegate_key(tmp_path).public_bytes())
    mine = delegate_key(tmp_path).public_bytes()
    monkeypatch.undo()
    assert held and mine == held[0], "the two services hold different delegate keys"
    assert delegate_key(tmp_path).public_bytes() == mine  # what a restarted service reads


def test_control_token_made_by_two_services_at_once_is_one_token(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    held = _other_service_wins_the_race(monkeypatch, lambda: ensure_token(tmp_path))
    mine = ensure_token(tmp_path)
    monkeypatch.undo()
    assert held and mine == held[0]
    assert ensure_token(tmp_path) == mine


def test_a_secret_already_there_is_kept_and_returned(tmp_path: Path) -> None:
    path = tmp_path / DELEGATE_KEY_NAME
    assert pki.write_secret_once(path, b"a" * 32) == b"a" * 32
    assert pki.write_secret_once(path, b"b" * 32) == b"a" * 32
    assert path.read_bytes() == b"a" * 32
    assert [p.name for p in tmp_path.iterdir()] == [DELEGATE_KEY_NAME]  # nothing left aside
