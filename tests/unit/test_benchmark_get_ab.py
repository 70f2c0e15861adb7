"""get_ab --senders-from-tree waits until the stopped senders are gone before ``cluster up``
starts them again: a sender that exited but is not reaped yet (a zombie) counts as gone, or
the wait would last until its 15 s timeout (benchmarks/get_ab.py)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.get_ab import _running

pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")


def test_a_live_process_is_running_an_exited_one_is_not_even_before_it_is_reaped() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        assert _running(child.pid) and child.stdin is not None
        child.stdin.close()  # it exits; not reaped yet, so /proc still lists it (a zombie)
        deadline = time.monotonic() + 10
        while _running(child.pid):
            assert time.monotonic() < deadline, "an exited child still counts as running"
            time.sleep(0.01)
        assert Path(f"/proc/{child.pid}").exists()
    finally:
        child.kill()
        child.wait()
    assert not _running(child.pid)
