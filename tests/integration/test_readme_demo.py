"""The README's first command works: scripts/demo.sh runs a network and a round trip."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from mydrive.node import cluster

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def test_readme_demo_script_round_trip(tmp_path: Path) -> None:
    """demo.sh starts 5 healthy peers and reports a bit-identical round trip."""
    home = tmp_path / "demo-home"
    env = {**os.environ, "MYDRIVE_CLUSTER_HOME": str(home)}
    try:
        result = subprocess.run([str(ROOT / "scripts" / "demo.sh")], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=600,
                                stdin=subprocess.DEVNULL)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "round trip OK: bit-identical" in result.stdout
        assert all(s.healthy for p in cluster.status(home) for s in p["services"])
    finally:
        cluster.stop(home)
