"""nginx's command line: on Linux it starts through ``env`` with glibc's malloc thresholds
above the per-stream buffers its config allocates (mydrive/node/nginx.py)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mydrive.errors import BadRequest
from mydrive.node import nginx
from mydrive.node.peerdir import PeerDir, init_peer
from mydrive.node.pki import init_network

UNITS = {"": 1, "k": 1024, "m": 1024 * 1024}


def _peer(tmp_path: Path) -> PeerDir:
    init_network(tmp_path / "pki")
    return init_peer(tmp_path / "p0", network_dir=tmp_path / "pki")


def _nginx_or_skip() -> str:
    try:
        return nginx.nginx_binary()
    except BadRequest:
        pytest.skip("nginx is not installed")


def _split(argv: list[str], binary: str) -> tuple[dict[str, str], list[str]]:
    """(the variables ``env`` sets, the command it runs)."""
    at = argv.index(binary)
    assert Path(argv[0]).name == "env"
    return dict(a.split("=", 1) for a in argv[1:at]), argv[at:]


def _buffer_sizes(conf: str) -> dict[str, int]:
    found = re.findall(r"^\s*((?:client_body|grpc)_buffer_size) (\d+)([km]?);", conf,
                       re.MULTILINE)
    return {name: int(n) * UNITS[unit] for name, n, unit in found}


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's thresholds: Linux")
def test_command_keeps_the_stream_buffers_in_the_heap(tmp_path: Path) -> None:
    """The mmap threshold is above every per-stream buffer the rendered config allocates
    (so they come from the heap, not a fresh mapping each stream) and the trim threshold
    keeps freed ones for the next streams; the rest is the plain nginx command."""
    binary, peer = _nginx_or_skip(), _peer(tmp_path)
    env, rest = _split(nginx.command(peer), binary)
    sizes = _buffer_sizes(nginx.render(peer).read_text())
    assert set(sizes) == {"client_body_buffer_size", "grpc_buffer_size"}
    mmap_threshold = int(env["MALLOC_MMAP_THRESHOLD_"])
    assert mmap_threshold > max(sizes.values())
    assert int(env["MALLOC_TRIM_THRESHOLD_"]) >= 4 * mmap_threshold
    base = nginx.prefix(peer).resolve()
    assert rest == [binary, "-p", str(base), "-c", str(base / "nginx.conf"),
                    "-e", str(base / "logs" / "error.log")]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="env: Linux")
def test_env_hands_the_variables_to_the_command_in_its_own_place(tmp_path: Path) -> None:
    """``env`` execs the command: the process the supervisor started (its PID) is the one
    running it, with the thresholds in its environment."""
    binary, peer = _nginx_or_skip(), _peer(tmp_path)
    env, _ = _split(nginx.command(peer), binary)
    prefix = nginx.command(peer)[: 1 + len(env)]
    probe = "import os; print(os.getpid(), os.environ['MALLOC_MMAP_THRESHOLD_'])"
    proc = subprocess.Popen([*prefix, sys.executable, "-c", probe], stdout=subprocess.PIPE,
                            text=True, env={})
    out, _ = proc.communicate(timeout=30)
    assert out.split() == [str(proc.pid), env["MALLOC_MMAP_THRESHOLD_"]]


def test_no_env_wrapper_off_linux(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows has no ``env`` (nor glibc): the plain nginx command."""
    binary, peer = _nginx_or_skip(), _peer(tmp_path)
    monkeypatch.setattr(sys, "platform", "win32")
    assert nginx.malloc_environment() == {}
    assert nginx.command(peer)[0] == binary
