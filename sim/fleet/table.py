"""Durability and availability per (R, peers, churn rate, repair policy): table and plots.

``sweep`` runs one fleet year per combination (fixed seed), ``markdown`` renders the table
that docs/simulator.md shows, ``plot`` draws the PNGs (matplotlib, from the bench extra;
imported only here). Each row says how long it took in wall and CPU time, since the machine
may be shared.
"""

from __future__ import annotations

import itertools
import json
import platform
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.fleet.model import FleetConfig, FleetResult, run_fleet


@dataclass(frozen=True)
class Sweep:
    replicas: tuple[int, ...] = (2, 3)
    peers: tuple[int, ...] = (1000, 3000)
    churn: tuple[float, ...] = (1.0, 2.0, 4.0)
    repair: tuple[str, ...] = ("none", "rereplicate")
    chunks_per_peer: int = 100
    days: float = 365.0
    seed: int = 1

    def configs(self) -> Iterable[FleetConfig]:
        for peers, r, churn, repair in itertools.product(self.peers, self.replicas,
                                                         self.churn, self.repair):
            yield FleetConfig(peers=peers, chunks=peers * self.chunks_per_peer,
                              days=self.days, replicas=r, seed=self.seed,
                              churn_scale=churn, repair=repair)


QUICK = Sweep(replicas=(2, 3), peers=(200,), churn=(1.0, 4.0), chunks_per_peer=50,
              days=120.0)


def sweep(spec: Sweep, progress: Callable[[str], None] | None = None) -> list[FleetResult]:
    results = []
    for config in spec.configs():
        result = run_fleet(config)
        results.append(result)
        if progress is not None:
            progress(row_text(result))
    return results


def row_text(r: FleetResult) -> str:
    c = r.config
    return (f"R={c.replicas} peers={c.peers} chunks={r.chunks} churn x{c.churn_scale:g} "
            f"{r.policy:<11} lost files {r.lost_files:>6} durability {r.durability:.6f} "
            f"availability {r.availability_mean:.6f} repairs {r.repairs:>7} "
            f"wall {r.wall_s:6.1f} s cpu {r.cpu_s:6.1f} s")


def _pct(x: float) -> str:
    return f"{100 * x:.4f} %"


def markdown(runs: list[dict[str, Any]]) -> str:
    """The table, from ``FleetResult.to_json()`` documents (so saved runs render too)."""
    lines = ["| R | peers | chunks | churn | repair | files lost | durability | "
             "availability (mean) | availability (worst day) | repairs | events | "
             "CPU s | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['replicas']} | {r['peers']:,} | {r['chunks']:,} | "
                     f"x{r['churn_scale']:g} | {r['repair']} | {r['lost_files']:,} of "
                     f"{r['files']:,} | {_pct(r['durability'])} | "
                     f"{_pct(r['availability_mean'])} | {_pct(r['availability_min'])} | "
                     f"{r['repairs']:,} | {r['events_total']:,} | {r['cpu_s']:.1f} | "
                     f"{r['wall_s']:.1f} |")
    return "\n".join(lines) + "\n"


def save_json(results: list[FleetResult], path: Path, *, note: str = "") -> None:
    doc: dict[str, Any] = {"machine": f"{platform.machine()} {platform.python_version()}",
                           "note": note, "runs": [r.to_json() for r in results]}
    path.write_text(json.dumps(doc, indent=1, sort_keys=True))


def label(r: FleetResult) -> str:
    c = r.config
    return f"R={c.replicas} {r.policy} x{c.churn_scale:g} {c.peers} peers"


FLOOR = 1e-7  # where a zero is drawn on the log scale (the legend says so)


def plot(runs: list[dict[str, Any]], out_dir: Path, *, prefix: str = "sim-fleet") -> list[Path]:
    """Files lost and files unavailable against churn, per (R, policy), one panel per peer
    count (from ``FleetResult.to_json()`` documents)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    peers = sorted({int(r["peers"]) for r in runs})
    styles = {"none": "--", "rereplicate": "-", "product": ":"}
    for key, title, fname in (("durability", "files lost in the year (fraction)", "lost"),
                              ("availability_mean", "files unavailable (time-averaged)",
                               "unavailable")):
        fig, axes = plt.subplots(1, len(peers), figsize=(5.5 * len(peers), 4.2),
                                 squeeze=False)
        for ax, n in zip(axes[0], peers, strict=True):
            groups: dict[tuple[int, str], list[dict[str, Any]]] = {}
            for r in runs:
                if int(r["peers"]) == n:
                    groups.setdefault((int(r["replicas"]), str(r["repair"])), []).append(r)
            chunks = 0
            for (replicas, policy), rs in sorted(groups.items()):
                rs.sort(key=lambda x: float(x["churn_scale"]))
                chunks = int(rs[0]["chunks"])
                ax.plot([float(x["churn_scale"]) for x in rs],
                        [max(1.0 - float(x[key]), FLOOR) for x in rs], marker="o",
                        linestyle=styles.get(policy, "-"),
                        label=f"R={replicas}, repair {policy}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_ylim(bottom=FLOOR / 2)
            ax.set_xlabel("churn rate (x the default model)")
            ax.set_ylabel(f"{title}; 0 drawn at {FLOOR:g}")
            ax.set_title(f"{n:,} peers, {chunks:,} chunks, one year")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
        fig.tight_layout()
        path = out_dir / f"{prefix}-{fname}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path)
    return written


def plot_series(series: list[tuple[str, list[tuple[float, float, int, int]]]], path: Path, *,
                title: str) -> Path:
    """Each run's year: unavailable files and files lost, day by day."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    for name, samples in series:
        days = [s[0] for s in samples]
        top.plot(days, [1.0 - s[1] for s in samples], label=name)
        bottom.plot(days, [s[2] for s in samples], label=name)
    top.set_ylabel("files unavailable (fraction)")
    top.set_yscale("symlog", linthresh=1e-6)
    bottom.set_ylabel("files lost (cumulative)")
    bottom.set_xlabel("day")
    top.set_title(title)
    for ax in (top, bottom):
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
