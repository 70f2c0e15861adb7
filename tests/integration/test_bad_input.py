"""Wrong input gets a precise error from the real CLI and changes nothing (guarantee 5)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _state(net) -> tuple[str, list[str]]:
    listing = net.mydrive("ls", "--json").stdout
    chunks = sorted(str(p) for p in net.home.rglob("*.chunk"))
    return listing, chunks


def test_bad_input_cli_errors_change_nothing(network_factory, tmp_path: Path) -> None:
    """Wrong passphrase, unknown user/file, traversal names: exact errors, state unchanged."""
    net = network_factory(5)
    net.mydrive("user", "create")
    src = tmp_path / "ok.txt"
    src.write_bytes(b"hello")
    net.mydrive("put", str(src), "/ok.txt")
    before = _state(net)

    wrong = net.mydrive("ls", passphrase="not the passphrase", check=False)
    assert wrong.returncode == 3 and "wrong passphrase for user 'alice'" in wrong.stderr

    unknown = net.mydrive("ls", user="nobody", check=False)
    assert unknown.returncode == 3 and "no user 'nobody'" in unknown.stderr

    dup = net.mydrive("user", "create", check=False)
    assert dup.returncode == 3 and "already exists" in dup.stderr

    bad_name = net.mydrive("user", "create", user="../evil", check=False)
    assert bad_name.returncode == 2 and "user name" in bad_name.stderr.lower()

    missing = net.mydrive("get", "/nope.txt", check=False)
    assert missing.returncode == 4 and "no file '/nope.txt'" in missing.stderr

    for name in ("../../etc/passwd", "/a/../../etc/passwd", "/a/./b", "C:\\windows\\x"):
        trav = net.mydrive("put", str(src), name, check=False)
        assert trav.returncode == 2, (name, trav.stderr)
        assert "error:" in trav.stderr
    again = net.mydrive("put", str(src), "/ok.txt", check=False)
    assert again.returncode == 4 and "already exists" in again.stderr

    no_pass = net.mydrive("ls", passphrase="", check=False)
    assert no_pass.returncode == 2 and "MYDRIVE_PASSPHRASE" in no_pass.stderr

    assert _state(net) == before
    assert not (net.peer_dir(0) / "downloads" / "etc").exists()


def test_bad_input_too_few_peers_names_the_numbers(network_factory, tmp_path: Path) -> None:
    """Three peers (two besides the owner) can't hold R=2 without one holding everything."""
    net = network_factory(3, name="small")
    net.mydrive("user", "create")
    src = tmp_path / "f"
    src.write_bytes(os.urandom(1000))
    result = net.mydrive("put", str(src), "/f", check=False)
    assert result.returncode == 5
    assert "2 eligible peer(s)" in result.stderr and "2 replica(s)" in result.stderr
    assert "at least 3 eligible peers" in result.stderr
    assert list(net.home.rglob("*.chunk")) == []
    assert '"files": []' in net.mydrive("ls", "--json").stdout
