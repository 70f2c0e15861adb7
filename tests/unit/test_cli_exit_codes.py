"""Errors end the CLI with their class's exit code, and docs/cli.md lists every class there."""

from __future__ import annotations

import re
import types
from pathlib import Path

from click.testing import CliRunner

from mydrive import errors
from mydrive.cli.main import cli

DOC = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
_ROW = re.compile(r"^\| (\d+) \| (.+) \|$")


def documented(text: str) -> dict[str, int]:
    """Error class name -> exit code, from the table of docs/cli.md."""
    found = {}
    for line in text.splitlines():
        m = _ROW.match(line.strip())
        if m:
            for name in re.findall(r"[A-Z][A-Za-z]+", m.group(2)):
                found[name] = int(m.group(1))
    return found


def misdocumented(module: types.ModuleType, text: str) -> list[str]:
    """Every error class of ``module`` missing from the table or listed under another code."""
    table = documented(text)
    return [f"{name}: exit code {cls.exit_code}, documented {table.get(name)}"
            for name, cls in sorted(vars(module).items())
            if isinstance(cls, type) and issubclass(cls, errors.MydriveError)
            and table.get(name) != cls.exit_code]


def test_cli_exit_codes_documented_for_every_error() -> None:
    """docs/cli.md's table names every error class under its own exit code."""
    assert misdocumented(errors, DOC.read_text()) == []


def test_cli_exit_code_check_catches_a_missing_or_wrong_row() -> None:
    """The check fails for a class the table lacks and for one under the wrong code."""
    fake = types.ModuleType("fake_errors")

    class NewError(errors.MydriveError):
        exit_code = 12

    fake.NewError = NewError  # type: ignore[attr-defined]
    fake.Conflict = errors.Conflict  # type: ignore[attr-defined]
    found = misdocumented(fake, "| 9 | Conflict |\n")
    assert found == ["NewError: exit code 12, documented None"]
    found = misdocumented(fake, "| 8 | Conflict |\n| 12 | NewError |\n")
    assert found == ["Conflict: exit code 9, documented 8"]


def test_cli_error_exits_with_its_class_code(tmp_path: Path) -> None:
    """A command that meets a MydriveError prints 'error: …' on stderr and exits with the
    class's code (BadRequest: 2), not a traceback."""
    runner = CliRunner()
    assert runner.invoke(cli, ["peer", "init", str(tmp_path / "p")]).exit_code == 0
    result = runner.invoke(cli, ["peer", "init", str(tmp_path / "p")])
    assert result.exit_code == errors.BadRequest.exit_code == 2
    assert "error:" in result.stderr and "already a peer directory" in result.stderr
    result = runner.invoke(cli, ["ls", "--peer", str(tmp_path / "none"), "--user", "u"])
    assert result.exit_code == 2 and "is not a peer directory" in result.stderr
