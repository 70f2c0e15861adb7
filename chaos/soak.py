"""Soak runs: every scenario × many seeds, one JSON line per run, and a Markdown summary.

    python -m chaos.soak --seeds 50 --peers 5 --out soak.jsonl     # run (appends, resumable)
    python -m chaos.soak --table --out soak.jsonl                  # summarize
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import sys
from pathlib import Path
from typing import Any

from .runner import BACKENDS, Report, run_scenario
from .scenario import catalog


def summary_line(report: Report) -> dict[str, Any]:
    ops = report.to_json()["operations"]
    return {
        "scenario": report.scenario, "seed": report.seed, "peers": report.peers,
        "ok": report.ok, "rates": report.rates,
        "failed_checkers": [v.checker for v in report.verdicts if v.failed],
        "skipped_checkers": [v.checker for v in report.verdicts if v.verdict == "skip"],
        "problems": report.problems[:5],
        "resent": sum(o["resent"] for o in ops if o["kind"] == "put"),
        "bad_fetched": sum(o["bad_fetched"] for o in ops if o["kind"] == "get"),
        "failovers": sum(o["totals"].get("failures", 0) for o in ops),
        "total_s": report.timings.get("total_s", 0.0),
        "replay": report.replay,
        **({} if report.backend == "local" else {"backend": report.backend}),
    }


def run(seeds: int, first_seed: int, peers: int, out: Path, only: list[str],
        backend: str = "local") -> int:
    done = set()
    if out.exists():
        for raw in out.read_text().splitlines():
            d = json.loads(raw)
            done.add((d["scenario"], d["seed"], d["peers"]))
    failures = 0
    for seed in range(first_seed, first_seed + seeds):
        for scenario in catalog():
            if only and scenario.name not in only:
                continue
            if (scenario.name, seed, peers) in done:
                continue
            try:
                report = run_scenario(scenario, peers=peers, seed=seed, backend=backend)
                line = summary_line(report)
            except Exception as exc:  # a harness breakdown is recorded, the soak goes on
                report = Report(scenario.name, seed, peers, backend=backend,
                                problems=[f"harness error: {type(exc).__name__}: {exc}"])
                line = summary_line(report)
            failures += not report.ok
            with open(out, "a", encoding="utf-8") as f:
                f.write(json.dumps(line, sort_keys=True) + "\n")
            print(f"{'ok  ' if report.ok else 'FAIL'} {scenario.name:<28} seed {seed:<4} "
                  f"{line['total_s']:6.1f}s" + ("" if report.ok else f"  {report.replay}"),
                  flush=True)
    return failures


def table(out: Path) -> str:
    rows: dict[str, list[dict[str, Any]]] = {}
    for line in out.read_text().splitlines():
        d = json.loads(line)
        rows.setdefault(d["scenario"], []).append(d)
    lines = ["| scenario | runs | passed | failed | segments resent (sum) | bad segments "
             "fetched (sum) | failovers (sum) | median s | max s | failing seeds |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name in sorted(rows):
        rs = rows[name]
        times = [r["total_s"] for r in rs]
        failed = [r for r in rs if not r["ok"]]
        seeds = ", ".join(str(r["seed"]) for r in failed[:10]) or "-"
        lines.append(f"| {name} | {len(rs)} | {len(rs) - len(failed)} | {len(failed)} | "
                     f"{sum(r['resent'] for r in rs)} | {sum(r['bad_fetched'] for r in rs)} | "
                     f"{sum(r['failovers'] for r in rs)} | {statistics.median(times):.1f} | "
                     f"{max(times):.1f} | {seeds} |")
    total = sum(len(r) for r in rows.values())
    bad = sum(1 for r in rows.values() for x in r if not x["ok"])
    lines.append(f"\n{total} runs, {total - bad} passed, {bad} failed.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos.soak", description=__doc__)
    parser.add_argument("--seeds", type=int, default=50)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--peers", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("soak.jsonl"))
    parser.add_argument("--scenario", action="append", default=[], help="only these")
    parser.add_argument("--table", action="store_true", help="summarize --out and exit")
    parser.add_argument("--backend", choices=BACKENDS, default="local",
                        help="netns: peers in network namespaces (root on Linux); use its own "
                             "--out file")
    args = parser.parse_args(argv)

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # so the running scenario stops the processes it started

    signal.signal(signal.SIGTERM, interrupt)
    if args.table:
        print(table(args.out))
        return 0
    return 1 if run(args.seeds, args.first_seed, args.peers, args.out, args.scenario,
                    args.backend) else 0


if __name__ == "__main__":
    sys.exit(main())
