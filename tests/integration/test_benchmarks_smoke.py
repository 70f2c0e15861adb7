"""The benchmark suite runs end to end (tiny sizes, no Tahoe) and reports every figure.

Speed is never asserted here: only that each phase ran, the JSON holds every figure the
README promises and the plots were drawn.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists(),
                       reason="nginx-light not installed (scripts/setup.sh)"),
]


def test_benchmarks_quick_reports_every_figure(tmp_path: Path) -> None:
    """`python -m benchmarks --quick` at tiny sizes writes results.json with every figure
    and all four PNG plots."""
    out = tmp_path / "results"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--no-tahoe", "--size-mib", "4",
         "--rss-sizes-mib", "2", "4", "--fault-size-mib", "4", "--runs", "1",
         "--out", str(out), "--work-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    doc = json.loads((out / "results.json").read_text())
    assert doc["errors"] == {}
    assert len(doc["meta"]["commit"]["head"]) == 40
    assert doc["meta"]["machine"]["nproc"] >= 1
    systems = doc["throughput"]["systems"]
    assert set(systems) == {"mydrive_tls", "mydrive_plain", "scp", "sftp"}
    for name, s in systems.items():
        for figure in ("put", "put_durable", "get", "get_hot"):
            assert s[f"{figure}_MBps"] > 0, (name, figure)
        # Until durable includes the put itself (plus its sync).
        assert s["put_durable_MBps"] <= s["put_MBps"], name
        assert s["put_cpu_s_per_gib"]["client"] > 0, name
        assert s["get_hot_cpu_s_per_gib"]["client"] > 0, name
    assert {"receiver", "sender", "nginx"} <= set(systems["mydrive_tls"]["put_cpu_s_per_gib"])
    assert "sshd" in systems["scp"]["put_cpu_s_per_gib"]
    assert {"mydrive_tls/scp", "mydrive_plain/scp"} <= set(doc["throughput"]["ratios"])
    assert set(doc["throughput"]["ratios"]["mydrive_tls/scp"]) == {
        "put", "put_durable", "get", "get_hot"}
    rows = doc["memory"]["rows"]
    assert [r["size_mib"] for r in rows] == [2, 4]
    for row in rows:
        assert row["peak_rss_mib"]["put"]["client"] > 0
        assert row["peak_rss_mib"]["get"]["sender"] > 0
    for rate in ("0.01", "0.05", "0.2"):
        r = doc["resend"]["rates"][rate]
        assert r["resent_equals_corrupt"] is True, (rate, r)
        assert r["slowdown"] > 0
    assert doc["failover"]["slowdown"] > 0
    assert doc["command_overhead"]["cpu_s"] > 0
    assert doc["profile"]["gil"]["put"]["client"]["samples"] > 0
    assert doc["profile"]["active"]["get"]["senders"]["cpu_s_measured"] >= 0
    assert "receivers" in doc["profile"]["gil"]["get"]
    for plot in ("throughput.png", "cpu.png", "memory.png", "faults.png"):
        assert (out / plot).stat().st_size > 1000, plot
    summary = (out / "summary.md").read_text()
    assert "| mydrive_tls |" in summary and "get (hot) MB/s" in summary
