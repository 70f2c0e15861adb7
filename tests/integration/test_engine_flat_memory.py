"""Flat memory: the client's peak RSS for put and get does not grow with the file size.

Each size runs in a fresh process (the client: the real engine on its default thread pool,
peers as real chunk stores on disk behind the in-memory transport, so the peers' share is
small and also flat). Linux only: the peak is VmHWM, reset before each phase through
/proc/self/clear_refs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(),
                       reason="needs Linux /proc (VmHWM and clear_refs)"),
]

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024 * 1024
SMALL_MIB, LARGE_MIB = 4, 96
# Chunks in flight are a few times 4 x 256 KiB here; 24 MiB of slack is far more than the
# flat engine needs and far less than the 92 MiB of ciphertext a leaking one keeps.
SLACK_BYTES = 24 * MIB

_CLIENT = textwrap.dedent("""
    import json, re, sys
    from pathlib import Path
    from mydrive.engine.download import download_file
    from mydrive.engine.settings import TransferSettings
    from mydrive.engine.upload import upload_file
    from tests.strategies import fast_user, mem_network, record_of

    def peak_bytes():
        status = Path("/proc/self/status").read_text()
        return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024

    def reset_peak():
        Path("/proc/self/clear_refs").write_text("5")

    src, work = Path(sys.argv[1]), Path(sys.argv[2])
    settings = TransferSettings(chunk_size_bytes=256 * 1024, segment_size_bytes=16 * 1024,
                                replicas=2, max_inflight_chunks=4)
    net = mem_network(work / "peers", 5)
    keys = fast_user()
    reset_peak()
    result = upload_file(src, keys=keys, owner_peer_id="p0", peers=net.peers,
                         settings=settings, transport=net.transport, clock=net.clock)
    put_peak = peak_bytes()
    reset_peak()
    out = work / "out.bin"
    download_file(record_of(result, keys), out, keys=keys, peers=net.addresses,
                  settings=settings, transport=net.transport, clock=net.clock)
    get_peak = peak_bytes()
    same_size = out.stat().st_size == src.stat().st_size
    print(json.dumps({"chunks": len(result.chunks), "put_peak_bytes": put_peak,
                      "get_peak_bytes": get_peak, "size_ok": same_size}))
""")


def _peaks(tmp: Path, size_mib: int) -> dict[str, int]:
    work = tmp / f"{size_mib}mib"
    work.mkdir()
    src = work / "src.bin"
    with open(src, "wb") as f:
        for _ in range(size_mib):
            f.write(os.urandom(MIB))
    done = subprocess.run([sys.executable, "-c", _CLIENT, str(src), str(work)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    peaks: dict[str, int] = json.loads(done.stdout.splitlines()[-1])
    assert peaks["size_ok"]
    return peaks


def test_engine_peak_rss_does_not_grow_with_file_size(tmp_path: Path) -> None:
    """Put and get of a 96 MiB file (384 chunks) peak within 24 MiB of a 4 MiB file's."""
    small = _peaks(tmp_path, SMALL_MIB)
    large = _peaks(tmp_path, LARGE_MIB)
    report = {k: (small[k] // MIB, large[k] // MIB) for k in ("put_peak_bytes", "get_peak_bytes")}
    print(f"peak RSS MiB ({SMALL_MIB} MiB file, {LARGE_MIB} MiB file): {report}")
    assert large["chunks"] >= 300
    for phase in ("put_peak_bytes", "get_peak_bytes"):
        assert large[phase] <= small[phase] + SLACK_BYTES, (
            f"{phase}: {large[phase] // MIB} MiB for {LARGE_MIB} MiB against "
            f"{small[phase] // MIB} MiB for {SMALL_MIB} MiB")
