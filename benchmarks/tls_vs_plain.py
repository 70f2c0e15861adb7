"""Upload/download MB/s of one file through nginx + mutual TLS vs plain gRPC, same run.

Two local 5-peer networks (one with TLS, one without) take turns on the same file; each
direction runs ``--rounds`` times per network and the best time counts (noise on a shared
2-core machine only ever makes things slower). Reports MB/s and the TLS/plain ratio.

    .venv/bin/python benchmarks/tls_vs_plain.py [--size-mib 256] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from transfer_memory import MiB, run_measured  # noqa: E402

from mydrive.node import cluster  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    opts = parser.parse_args()
    md = [sys.executable, "-m", "mydrive"]
    best: dict[str, dict[str, float]] = {"plain": {}, "tls": {}}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        with open(src, "wb") as f:
            for _ in range(opts.size_mib):
                f.write(os.urandom(MiB))
        envs = {}
        homes = {"plain": Path(tmp) / "plain", "tls": Path(tmp) / "tls"}
        try:
            for mode, home in homes.items():
                cluster.create(home, 5, tls=(mode == "tls"))
                cluster.start(home)
                env = {**os.environ, "MYDRIVE_PEER": str(home / "peer-0"),
                       "MYDRIVE_USER": "bench", "MYDRIVE_PASSPHRASE": "bench passphrase"}
                env.pop("MYDRIVE_FAULTS", None)
                envs[mode] = env
                run_measured(md + ["user", "create"], env)
            for r in range(opts.rounds):
                for mode in ("plain", "tls"):
                    env = envs[mode]
                    put_s, _ = run_measured(md + ["put", str(src), f"/r{r}"], env)
                    get_s, _ = run_measured(md + ["get", f"/r{r}", "--out",
                                                  str(Path(tmp) / f"out-{mode}-{r}")], env)
                    (Path(tmp) / f"out-{mode}-{r}" / f"r{r}").unlink()
                    best[mode]["put_s"] = min(best[mode].get("put_s", 1e9), put_s)
                    best[mode]["get_s"] = min(best[mode].get("get_s", 1e9), get_s)
        finally:
            for home in homes.values():
                cluster.stop(home)
    size = opts.size_mib * MiB
    out = {mode: {"put_MBps": round(size / b["put_s"] / 1e6, 1),
                  "get_MBps": round(size / b["get_s"] / 1e6, 1)} for mode, b in best.items()}
    out["ratio_tls_over_plain"] = {
        "put": round(out["tls"]["put_MBps"] / out["plain"]["put_MBps"], 2),
        "get": round(out["tls"]["get_MBps"] / out["plain"]["get_MBps"], 2)}
    out["size_mib"] = opts.size_mib
    if opts.json:
        print(json.dumps(out, indent=2))
        return
    for mode in ("plain", "tls"):
        m = out[mode]
        print(f"{mode:>5}: put {m['put_MBps']:>7} MB/s  get {m['get_MBps']:>7} MB/s")
    ratio = out["ratio_tls_over_plain"]
    print(f"TLS/plain throughput ratio ({opts.size_mib} MiB): put {ratio['put']}, "
          f"get {ratio['get']}")


if __name__ == "__main__":
    main()
