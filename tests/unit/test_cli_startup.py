"""Every CLI start imports only what its command needs: a start pays for the modules it
imports (and, without .pyc files, for compiling them), and `put`/`get` pay it on every
transfer. Each command runs in a fresh interpreter here, and the test asserts which heavy
modules are NOT loaded when it ends; no timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from mydrive.cli.main import cli

# Runs the CLI as `python -m mydrive` does, then writes the names in sys.modules to a file.
_RUN_CLI = """
import json, sys
from mydrive.cli.main import main
out, sys.argv = sys.argv[1], ["mydrive", *sys.argv[2:]]
try:
    main()
except SystemExit as exc:
    code = exc.code
else:
    code = 0
with open(out, "w") as f:
    json.dump({"exit": code, "modules": sorted(sys.modules)}, f)
"""

ENGINE = ["mydrive.engine.upload", "mydrive.engine.download", "mydrive.engine.durability",
          "mydrive.engine.repair", "mydrive.engine.check", "mydrive.engine.gc"]
HTTP = ["urllib.request", "http.client"]
SERVICE_SIDE = ["mydrive.node.jobs_runner", "mydrive.node.jobs_upload", "mydrive.node.serve"]
OTHER_COMMANDS = ["mydrive.cli.check", "mydrive.cli.pki", "mydrive.cli.peer",
                  "mydrive.cli.serve", "mydrive.cli.cluster", "mydrive.cli.compose",
                  "mydrive.cli.kubernetes"]
GRPC = ["grpc", "asyncio"]  # gRPC's import brings asyncio along


def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, set[str]]:
    """(exit code, modules loaded) of ``mydrive ARGS`` in a fresh interpreter."""
    out = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", _RUN_CLI, str(out), *args], check=False,
                   capture_output=True, env={**os.environ, **(env or {})}, timeout=120)
    result = json.loads(out.read_text())
    return result["exit"], set(result["modules"])


@pytest.fixture(scope="module")
def peer_with_user(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A peer directory with one user (no service running): the environment to act as it."""
    root = tmp_path_factory.mktemp("startup") / "peer"
    assert CliRunner().invoke(cli, ["peer", "init", str(root)]).exit_code == 0
    env = {"MYDRIVE_PEER": str(root), "MYDRIVE_USER": "alice",
           "MYDRIVE_PASSPHRASE": "correct horse"}
    done = subprocess.run([sys.executable, "-m", "mydrive", "user", "create"], env={
        **os.environ, **env}, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    return env


def test_ls_imports_neither_engine_nor_grpc_nor_http(tmp_path: Path,
                                                    peer_with_user: dict[str, str]) -> None:
    """`mydrive ls` reads the local metadata: no transfer engine, no gRPC (asyncio), no
    urllib, no other command's module."""
    code, loaded = run_cli(tmp_path, "ls", "--json", env=peer_with_user)
    assert code == 0
    assert "mydrive.client" in loaded  # it did log in and list
    assert loaded.isdisjoint(ENGINE + HTTP + SERVICE_SIDE + OTHER_COMMANDS + GRPC), \
        sorted(loaded.intersection(ENGINE + HTTP + SERVICE_SIDE + OTHER_COMMANDS + GRPC))


def test_get_imports_no_engine_before_it_transfers(tmp_path: Path,
                                                   peer_with_user: dict[str, str]) -> None:
    """`mydrive get` of a missing file goes as far as finding it (after importing the job
    client): neither the engine, nor the job runner, nor urllib is imported."""
    code, loaded = run_cli(tmp_path, "get", "/missing", env=peer_with_user)
    assert code == 4  # UnknownFile
    assert "mydrive.node.jobs_control" in loaded
    assert loaded.isdisjoint(ENGINE + HTTP + SERVICE_SIDE + OTHER_COMMANDS), \
        sorted(loaded.intersection(ENGINE + HTTP + SERVICE_SIDE + OTHER_COMMANDS))


def test_command_help_imports_no_crypto(tmp_path: Path) -> None:
    """`mydrive ls --help` imports one command module, and no cryptography or gRPC."""
    code, loaded = run_cli(tmp_path, "ls", "--help")
    assert code == 0
    heavy = ["cryptography", "mydrive.client", "mydrive.cli.jobs", *GRPC, *OTHER_COMMANDS]
    assert loaded.isdisjoint(heavy), sorted(loaded.intersection(heavy))


def test_every_lazy_command_loads_under_its_name() -> None:
    """COMMAND_MODULES points each name at the command of that name (a typo would only
    show when someone runs it)."""
    from mydrive.cli.main import COMMAND_MODULES, load_command

    for name in COMMAND_MODULES:
        assert load_command(name).name == name, name
    user = load_command("user")
    assert isinstance(user, click.Group)
    assert {"create", "rotate-passphrase", "add-ssh-key"} <= set(user.commands)


def test_help_lists_every_command() -> None:
    """`mydrive --help` still lists every command, each with its short help."""
    from mydrive.cli.main import COMMAND_MODULES

    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    listed = {line.split()[0] for line in result.output.split("Commands:")[1].splitlines()
              if line.strip()}
    assert listed == set(COMMAND_MODULES)


def test_transport_on_first_use_builds_once_and_closes_only_what_it_built() -> None:
    """open_client's transport is built by its first call (once, even from several threads)
    and closed only if it was built."""
    import threading

    from mydrive.node.local_client import TransportOnFirstUse

    built: list[object] = []

    class Fake:
        closed = False

        def chunk_status(self, *args: object) -> str:
            return "ok"

        def close(self) -> None:
            self.closed = True

    def build() -> Fake:
        built.append(Fake())
        return built[-1]  # type: ignore[return-value]

    never = TransportOnFirstUse(build)  # type: ignore[arg-type]
    never.close()
    assert built == []
    lazy = TransportOnFirstUse(build)  # type: ignore[arg-type]
    workers = [threading.Thread(target=lambda: lazy.chunk_status("peer")) for _ in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert len(built) == 1 and lazy.chunk_status("peer") == "ok"
    lazy.close()
    assert built[0].closed  # type: ignore[attr-defined]
