"""The public API stated in mydrive/__init__.py resolves, and importing mydrive stays cheap."""

from __future__ import annotations

import subprocess
import sys

import mydrive


def test_public_api_names_resolve() -> None:
    """Every name in mydrive.__all__ resolves to the object its module defines."""
    for name in mydrive.__all__:
        assert getattr(mydrive, name) is not None, name
    assert mydrive.PeerClient.__module__ == "mydrive.client"


def test_public_api_unknown_name_is_an_attribute_error() -> None:
    """A name outside the public API is an AttributeError, not a silent None."""
    try:
        mydrive.no_such_thing  # noqa: B018
    except AttributeError as exc:
        assert "no_such_thing" in str(exc)
    else:
        raise AssertionError("mydrive.no_such_thing resolved")


def test_public_api_import_is_cheap() -> None:
    """`import mydrive` loads neither grpc nor cryptography."""
    code = ("import sys, mydrive; "
            "print(sorted(m for m in ('grpc', 'cryptography') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
